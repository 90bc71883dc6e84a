/**
 * The TypeScript micro-hypervisor. It takes the machine over from the handoff
 * (a memory map with fenced ranges), allocates host frames for guest RAM and
 * EPT tables, builds VMs from Multiboot images, and schedules their vCPUs
 * onto the machine's logical CPUs in time slices.
 */
import { basename } from 'node:path';
import type { CpuScheduler, PcMachine } from '../machine/platform/pc.js';
import type { SliceExit, X86Cpu } from '../machine/cpu/x86-cpu.js';
import { Vm, type Vcpu, type VmExit } from './vm.js';
import { createVmMemory, type HostMemoryManager } from './host-memory.js';
import { parseMultibootImage, buildMultibootInfo, qemuPcMemoryMap, DEFAULT_MBI_REGION, MULTIBOOT_BOOTLOADER_MAGIC } from './multiboot/index.js';
import { seabiosDeviceState } from './legacy-state.js';
import { dropWrite } from './dropped-writes.js';
import { OpenBusExhausted } from './open-bus.js';

export interface GuestSpec {
  image: Uint8Array;
  fileName: string;
  name?: string;
  memBytes: number;
  vcpus: number;
  cmdline?: string;
}

export interface HandoffMemoryRange {
  base: number;
  length: number;
  type: number;
}

export interface GuestReport {
  name: string;
  exit: VmExit | null;
  serial: string;
  exits: Record<string, number>;
  vcpus: { index: number; state: string; hostMs: number; lastPcpu: number }[];
}

export class Hypervisor implements CpuScheduler {
  readonly name = 'hypervisor';
  readonly vms: Vm[] = [];
  readonly host: HostMemoryManager;
  private rr = 0;
  onAllStopped: (() => void) | undefined;

  constructor(
    readonly machine: PcMachine,
    handoffMap: readonly HandoffMemoryRange[],
    host: HostMemoryManager,
  ) {
    this.host = host;
    // From now on the machine's CPUs run our vCPUs; the machine's own CPUs stay parked.
    machine.scheduler = this;
    machine.log('hypervisor', `took over: ${handoffMap.filter((r) => r.type === 1).length} usable ranges, ${handoffMap.filter((r) => r.type === 5).length} fenced`);
  }

  /** Builds a VM from a Multiboot image, as qemu -kernel does. Errors name the file and field. */
  createGuest(spec: GuestSpec): Vm {
    const plan = parseMultibootImage(spec.image, spec.fileName, { ramSize: spec.memBytes });
    const id = this.vms.length + 1;
    const memory = createVmMemory(this.host, `vm${id}`, spec.memBytes);
    const vm = new Vm(this.machine, memory, { id, name: spec.name ?? basename(spec.fileName).replace(/\.elf$/, ''), vcpus: spec.vcpus, memory, host: this.host });
    for (const seg of plan.segments) {
      const bytes = new Uint8Array(seg.memSize);
      bytes.set(seg.fileBytes.subarray(0, Math.min(seg.fileBytes.length, seg.memSize)));
      memory.write(seg.paddr, bytes);
    }
    // QEMU always passes "<kernel> <append>", with the space even when -append is empty.
    const cmdline = `${spec.fileName} ${spec.cmdline ?? ''}`;
    const mbi = buildMultibootInfo({ memoryMap: qemuPcMemoryMap(spec.memBytes), cmdline, bootLoaderName: 'qemu', placeAt: DEFAULT_MBI_REGION });
    memory.write(mbi.base, mbi.bytes);
    seabiosDeviceState(vm.io);
    vm.vcpus[0]!.cpu.enterFlatProtectedMode(plan.entry, MULTIBOOT_BOOTLOADER_MAGIC, mbi.address);
    vm.onStop = () => this.vmStopped();
    this.vms.push(vm);
    this.allCache = null;
    this.vcpuByCpu.clear();
    this.machine.log('hypervisor', `${vm.name}: ${spec.memBytes >> 20} MiB, ${spec.vcpus} vCPU, entry 0x${plan.entry.toString(16)}`);
    return vm;
  }

  private vmStopped(): void {
    this.allCache = null;
    if (this.vms.every((v) => v.state === 'stopped')) this.onAllStopped?.();
  }

  private get pcpus(): number {
    return this.machine.cpus.length;
  }

  // ------------------------------------------------------------ CpuScheduler
  private allCache: X86Cpu[] | null = null;

  all(): readonly X86Cpu[] {
    this.allCache ??= this.vms.filter((v) => v.state === 'running').flatMap((v) => v.vcpus.map((c) => c.cpu));
    return this.allCache;
  }

  private readonly ready: Vcpu[] = [];
  private readonly picked: X86Cpu[] = [];

  /**
   * Round-robin: at most one vCPU per pCPU per round; the rest wait for the next round.
   * The array is reused (valid until the next call): this runs once per timer tick of an idle guest.
   */
  runnable(): readonly X86Cpu[] {
    const ready = this.ready;
    const picked = this.picked;
    ready.length = 0;
    picked.length = 0;
    for (const vm of this.vms) if (vm.state === 'running') for (const c of vm.vcpus) if (c.cpu.state === 'running') ready.push(c);
    if (ready.length === 0) return picked;
    const start = this.rr % ready.length;
    const n = Math.min(this.pcpus, ready.length);
    for (let slot = 0; slot < n; slot++) {
      const v = ready[(start + slot) % ready.length]!;
      v.lastPcpu = slot;
      picked.push(v.cpu);
    }
    this.rr += n;
    return picked;
  }

  private readonly vcpuByCpu = new Map<X86Cpu, Vcpu>();

  private vcpuOf(cpu: X86Cpu): Vcpu | undefined {
    if (this.vcpuByCpu.size === 0) for (const vm of this.vms) for (const v of vm.vcpus) this.vcpuByCpu.set(v.cpu, v);
    return this.vcpuByCpu.get(cpu);
  }

  onSliceExit(cpu: X86Cpu, exit: SliceExit, hostMs: number): void {
    const v = this.vcpuOf(cpu);
    if (!v) return;
    v.hostMs += hostMs;
    v.slices++;
    const vm = v.vm;
    switch (exit.kind) {
      case 'triple-fault':
        vm.stop({ reason: 'triple-fault', code: 0, detail: `vCPU ${v.index}: ${exit.reason}` });
        break;
      case 'error':
        vm.stop({ reason: 'error', code: 2, detail: `vCPU ${v.index}: ${exit.message}` });
        break;
      case 'ept-violation':
        this.eptViolation(v, exit);
        break;
      default:
        break;
    }
    if (vm.state === 'running' && vm.vcpus.every((c) => !c.cpu.canBeWokenByInterrupt() && c.cpu.state !== 'running')) {
      const wakeable = vm.vcpus.some((c) => c.cpu.state === 'wait-for-sipi') && vm.vcpus.some((c) => c.cpu.state === 'running');
      if (!wakeable) vm.stop({ reason: 'halted', code: 0, detail: 'all vCPUs halted with interrupts disabled' });
    }
  }

  /**
   * Guest-physical addresses with nothing behind them read as all-ones and
   * ignore writes, as on a PC bus; the guest never reaches other memory.
   */
  private eptViolation(v: Vcpu, exit: Extract<SliceExit, { kind: 'ept-violation' }>): void {
    const vm = v.vm;
    const page = Number(exit.gpa & ~0xfffn);
    if (vm.vmMemory.isRam(page)) {
      vm.stop({ reason: 'error', code: 2, detail: `vCPU ${v.index}: EPT violation on guest RAM at GPA 0x${exit.gpa.toString(16)} (${exit.access})` });
      return;
    }
    if (exit.access === 'write') {
      if (dropWrite(v.cpu).kind === 'undecodable') vm.stop({ reason: 'error', code: 2, detail: `vCPU ${v.index}: write to unbacked GPA 0x${exit.gpa.toString(16)} from an undecodable instruction` });
      return;
    }
    try {
      vm.vmMemory.mapOpenBus(page);
    } catch (e) {
      // Host frames ran out: this VM stops with a report; the process and the other VMs go on.
      if (!(e instanceof OpenBusExhausted)) throw e;
      vm.stop({ reason: 'error', code: 2, detail: `vCPU ${v.index}: ${e.message}` });
      return;
    }
    v.cpu.engine.flushTlb();
  }

  /** The per-guest JSON the CLI prints. */
  guestReports(): GuestReport[] {
    return this.vms.map((vm) => ({
      name: vm.name,
      exit: vm.exit,
      serial: vm.serial,
      exits: vm.exitCounts(),
      vcpus: vm.vcpus.map((c) => ({ index: c.index, state: c.cpu.state, hostMs: Math.round(c.hostMs * 10) / 10, lastPcpu: c.lastPcpu })),
    }));
  }

  close(): void {
    for (const vm of this.vms) vm.close();
  }
}
