/**
 * A virtual machine: guest RAM behind EPT tables in host RAM, per-VM device
 * models (the same classes the machine uses), and vCPUs that are X86Cpu
 * execution contexts of their own, scheduled onto the machine's CPUs.
 */
import { IoBus } from '../machine/devices/io-bus.js';
import { Pic8259 } from '../machine/devices/pic8259.js';
import { Pit8254 } from '../machine/devices/pit8254.js';
import { Uart16550 } from '../machine/devices/uart16550.js';
import { CmosRtc } from '../machine/devices/cmos-rtc.js';
import { DebugExit } from '../machine/devices/debug-exit.js';
import { Debugcon } from '../machine/devices/debugcon.js';
import { LocalApic, deliverIpi, type IpiMessage } from '../machine/devices/lapic.js';
import { X86Cpu, type CpuEvent, type CpuHost, type LocalMmio } from '../machine/cpu/x86-cpu.js';
import type { PcMachine } from '../machine/platform/pc.js';
import type { VmMemory } from './vm-memory.js';
import { emptyExitCounts, exitsFromCounters, type ExitCounts } from './exits.js';
import { handleHypercall } from './hypercalls.js';
import { VmMsrs } from './msr-exits.js';
import type { HostMemoryManager } from './host-memory.js';

export const GUEST_LAPIC_GPA = 0xfee00000;
/** Host-physical windows (above RAM, below 2^40) where vCPU engines map guest device MMIO. */
export const MMIO_WINDOW_BASE = 0xf0_0000_0000;

export type VmState = 'running' | 'stopped';

export interface VmExit {
  reason: 'debug-exit' | 'halted' | 'triple-fault' | 'error' | 'stopped';
  code: number;
  detail?: string;
}

export interface VmConfig {
  id: number;
  name: string;
  vcpus: number;
  memory: VmMemory;
  /** Host frames for the VM's MSR permission map and vCPU control areas. */
  host: HostMemoryManager;
}

export class Vcpu {
  readonly cpu: X86Cpu;
  readonly lapic: LocalApic;
  hostMs = 0;
  slices = 0;
  lastPcpu = -1;

  constructor(
    readonly vm: Vm,
    readonly index: number,
    host: CpuHost,
    machine: PcMachine,
  ) {
    this.lapic = new LocalApic({
      clock: machine.timeline,
      apicId: index,
      bsp: index === 0,
      onIpi: (msg) => vm.routeIpi(msg),
      cpu: {
        onInterruptChange: (pending) => pending && machine.kick(),
        onInit: () => {
          this.cpu.reset();
          this.cpu.state = 'wait-for-sipi';
        },
        onStartup: (vector) => this.cpu.startupAt(vector),
      },
    });
    this.cpu = new X86Cpu(index, index, host, { apicId: index, logicalCpus: vm.vcpuCount, hypervisor: true });
    this.cpu.onEvent = (e: CpuEvent) => vm.cpuEvent(this, e);
  }
}

export class Vm implements CpuHost {
  readonly id: number;
  readonly name: string;
  readonly vcpus: Vcpu[] = [];
  readonly io = new IoBus();
  readonly pic: Pic8259;
  readonly pit: Pit8254;
  readonly uart: Uart16550;
  readonly cmos: CmosRtc;
  readonly debugExit: DebugExit;
  readonly debugcon: Debugcon;
  readonly localMmio: LocalMmio[];
  readonly vcpuCount: number;
  readonly msrExits: VmMsrs;
  state: VmState = 'running';
  /** Held stopped by a debugger (gdb --gdb-vm): the scheduler skips its vCPUs; its devices keep time. */
  frozen = false;
  exit: VmExit | null = null;
  serial = '';
  ioExits = 0;
  mmioExits = 0;
  onSerial: ((text: string) => void) | undefined;
  onStop: ((vm: Vm) => void) | undefined;

  constructor(
    readonly machine: PcMachine,
    readonly vmMemory: VmMemory,
    config: VmConfig,
  ) {
    this.id = config.id;
    this.name = config.name;
    this.vcpuCount = config.vcpus;
    const clock = machine.timeline;
    this.pic = new Pic8259({ onIntrChange: (level) => level && machine.kick() });
    this.pit = new Pit8254({ clock, irq0: this.pic.irqLine(0) });
    this.uart = new Uart16550({ clock, irq: this.pic.irqLine(4), base: 0x3f8, onTransmit: (b) => this.serialByte(b) });
    this.cmos = new CmosRtc({ clock, irq: this.pic.irqLine(8), memoryBytes: vmMemory.ramBytes, lowMemoryBytes: vmMemory.ramBytes, cpus: config.vcpus });
    this.debugExit = new DebugExit({ onExit: (status, value) => this.stop({ reason: 'debug-exit', code: status, detail: `isa-debug-exit value 0x${value.toString(16)}` }) });
    this.debugcon = new Debugcon({});
    for (const d of [this.pic, this.pit, this.uart, this.cmos, this.debugExit, this.debugcon]) this.io.register(d);
    // The guest's LAPIC page: EPT maps it to a host MMIO window that each vCPU engine routes to its own LAPIC.
    const lapicWindow = MMIO_WINDOW_BASE + this.id * 0x10000;
    vmMemory.mapMmioWindow(GUEST_LAPIC_GPA, lapicWindow);
    this.localMmio = [
      {
        base: lapicWindow,
        size: 0x1000,
        read: (cpu, off, size) => {
          this.mmioExits++;
          return BigInt(this.vcpus[cpu.index]!.lapic.mmioRead(off, size as 1 | 2 | 4) >>> 0);
        },
        write: (cpu, off, size, v) => {
          this.mmioExits++;
          this.vcpus[cpu.index]!.lapic.mmioWrite(off, size as 1 | 2 | 4, Number(v & 0xffff_ffffn));
        },
      },
    ];
    this.msrExits = new VmMsrs(config.host, `vm${this.id}`, config.vcpus, (cpu) => this.vcpus[cpu.index]!.lapic);
    for (let i = 0; i < config.vcpus; i++) this.vcpus.push(new Vcpu(this, i, this, machine));
    for (const v of this.vcpus.slice(1)) v.cpu.state = 'wait-for-sipi';
  }

  // ------------------------------------------------------------ CpuHost
  get memory(): PcMachine['memory'] {
    return this.machine.memory;
  }

  get walkMemory(): VmMemory['walkMemory'] {
    return this.vmMemory.walkMemory;
  }

  get secondLevel(): VmMemory['secondLevel'] {
    return this.vmMemory.secondLevel;
  }

  ioRead(_cpu: X86Cpu, port: number, size: 1 | 2 | 4): number {
    this.ioExits++;
    this.machine.timeline.advanceTo(this.machine.now());
    return this.io.ioRead(port, size);
  }

  ioWrite(_cpu: X86Cpu, port: number, size: 1 | 2 | 4, value: number): void {
    this.ioExits++;
    this.machine.timeline.advanceTo(this.machine.now());
    this.io.ioWrite(port, size, value);
  }

  interruptPending(cpu: X86Cpu): boolean {
    const lapic = this.vcpus[cpu.index]!.lapic;
    if (lapic.extIntEnabled() && this.pic.hasInterrupt()) return true;
    return lapic.hasInterrupt();
  }

  acknowledgeInterrupt(cpu: X86Cpu): number | null {
    const lapic = this.vcpus[cpu.index]!.lapic;
    if (lapic.extIntEnabled() && this.pic.hasInterrupt()) return this.pic.acknowledge();
    if (lapic.hasInterrupt()) return lapic.acknowledge();
    return null;
  }

  isWatchedPage(page: number): boolean {
    return this.machine.isWatchedPage(page);
  }

  onWatchedWrite(cpu: X86Cpu, page: number): void {
    this.machine.triggerMonitors(page, 4096, `write by ${this.name} vCPU ${cpu.index}`);
    cpu.requestStop();
  }

  hypercall(cpu: X86Cpu): boolean {
    return handleHypercall(this, this.vcpus[cpu.index]!);
  }

  // ------------------------------------------------------------ events
  routeIpi(msg: IpiMessage): void {
    deliverIpi(this.vcpus.map((v) => v.lapic), msg);
    this.machine.kick();
  }

  cpuEvent(v: Vcpu, e: CpuEvent): void {
    this.machine.logLazy(e.kind, () => `${this.name} vCPU ${v.index}: ${e.vector !== undefined ? `vector 0x${e.vector.toString(16)} ` : ''}${e.detail ?? ''} rip=0x${e.rip.toString(16)}`);
  }

  private serialByte(b: number): void {
    const ch = String.fromCharCode(b);
    this.serial += ch;
    this.onSerial?.(ch);
  }

  stop(exit: VmExit): void {
    if (this.state === 'stopped') return;
    this.state = 'stopped';
    this.exit = exit;
    for (const v of this.vcpus) v.cpu.requestStop();
    this.machine.log('vm-exit', `${this.name}: ${exit.reason} code ${exit.code}${exit.detail ? `: ${exit.detail}` : ''}`);
    this.machine.kick();
    this.onStop?.(this);
  }

  exitCounts(): ExitCounts {
    const total = emptyExitCounts();
    for (const v of this.vcpus) {
      const e = exitsFromCounters(v.cpu.counters, 0, 0);
      for (const k of Object.keys(total) as (keyof ExitCounts)[]) total[k] += e[k];
    }
    total.io = this.ioExits;
    total.mmio = this.mmioExits;
    return total;
  }

  close(): void {
    for (const v of this.vcpus) v.cpu.close();
  }
}
