/**
 * A virtual machine: guest RAM behind EPT tables in host RAM, per-VM device
 * models (the same classes the machine uses), and vCPUs that are X86Cpu
 * execution contexts of their own, scheduled onto the machine's CPUs.
 */
import type { IoBus } from '../machine/devices/io-bus.js';
import type { Pic8259 } from '../machine/devices/pic8259.js';
import type { Pit8254 } from '../machine/devices/pit8254.js';
import type { Uart16550 } from '../machine/devices/uart16550.js';
import type { CmosRtc } from '../machine/devices/cmos-rtc.js';
import type { DebugExit } from '../machine/devices/debug-exit.js';
import type { Debugcon } from '../machine/devices/debugcon.js';
import type { LocalApic } from '../machine/devices/lapic.js';
import { PcBoard } from '../machine/platform/board.js';
import { ChildClock } from '../machine/clock.js';
import { VmTsc } from './vm-tsc.js';
import { checkVersion, stateNumber, stateRecord, stateString, StateError, type StateRecord } from '../machine/state.js';
import { X86Cpu, type CpuEvent, type CpuHost, type LocalMmio } from '../machine/cpu/x86-cpu.js';
import { GUEST_IOAPIC_WINDOW, GUEST_LAPIC_WINDOW, type PcMachine } from '../machine/platform/pc.js';
import type { GuestMemory } from './memory/guest-memory.js';
import { emptyExitCounts, exitsFromCounters, type ExitCounts } from './exits.js';
import { handleHypercall } from './hypercalls.js';
import { appendTranscript } from '../machine/devices/transcript.js';
import { VmMsrs, type MsrExitFrames } from './msr-exits.js';
import { REG } from '../machine/cpu/unicorn/constants.js';
import type { VmObserver } from './security/vm-observer.js';
import type { FwCfg } from '../machine/devices/fw-cfg.js';
import { createVmFwCfg } from './vm-fw-cfg.js';
import { addAcpiPlatformDevices } from './acpi/platform-devices.js';

export const GUEST_LAPIC_GPA = 0xfee00000;
export const GUEST_IOAPIC_GPA = 0xfec00000;

export type VmState = 'running' | 'stopped';

export interface VmExit {
  reason: 'debug-exit' | 'halted' | 'triple-fault' | 'error' | 'stopped';
  code: number;
  detail?: string;
  /** The VM's own virtual time when it stopped. */
  atNs?: number;
}

export interface VmConfig {
  id: number;
  name: string;
  vcpus: number;
  memory: GuestMemory;
  /** Where the VM's vCPU control areas (and the shared MSR permission map) come from. */
  msrFrames: MsrExitFrames;
  /** Where the VM's own clock starts (a restored VM goes on from its saved time). */
  clockNs?: number;
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
    this.lapic = vm.board.lapics[index]!;
    this.cpu = new X86Cpu(index, index, host, { apicId: index, logicalCpus: vm.vcpuCount, hypervisor: true, apicEnabled: () => this.lapic.hardwareEnabled() }, machine.hostCpus[0]);
    this.cpu.onEvent = (e: CpuEvent) => vm.cpuEvent(this, e);
  }
}

export class Vm implements CpuHost {
  readonly id: number;
  readonly name: string;
  readonly vcpus: Vcpu[] = [];
  readonly board: PcBoard;
  /** The VM's own virtual time: it stands still while the VM is paused and moves with it to another machine. */
  readonly clock: ChildClock;
  readonly io: IoBus;
  readonly pic: Pic8259;
  readonly pit: Pit8254;
  readonly uart: Uart16550;
  readonly cmos: CmosRtc;
  readonly debugExit: DebugExit;
  readonly debugcon: Debugcon;
  /** fw_cfg at 0x510, as QEMU gives every guest (NB_CPUS = vcpus). */
  readonly fwCfg: FwCfg;
  readonly localMmio: LocalMmio[];
  readonly vcpuCount: number;
  readonly msrExits: VmMsrs;
  /** The vCPUs' time-stamp counters, on the VM clock. */
  readonly tsc: VmTsc;
  readonly cr8: NonNullable<CpuHost['cr8']>;
  state: VmState = 'running';
  /** Held stopped by a debugger (gdb --gdb-vm): the scheduler skips its vCPUs; its devices keep time. */
  frozen = false;
  exit: VmExit | null = null;
  serial = '';
  ioExits = 0;
  mmioExits = 0;
  /** Which of its ready vCPUs the scheduler runs first next round (saved: it decides the interleaving). */
  scheduleCursor = 0;
  onSerial: ((text: string) => void) | undefined;
  onStop: ((vm: Vm) => void) | undefined;
  /** The guest's CHECKPOINT hypercall (the host snapshots here; the slice has ended). */
  onCheckpoint: ((vm: Vm, vcpu: Vcpu) => void) | undefined;
  /** Hypercalls 16-31 (the function service, docs/functions.md): returns RAX; unset means HC_ENOSYS. */
  onServiceCall: ((vm: Vm, vcpu: Vcpu, fn: number, arg: bigint) => bigint) | undefined;
  /** Which linked clone this VM is (CLONE_INDEX hypercall); null when it is not one. */
  cloneIndex: number | null = null;
  /** Behaviour observers on the exit stream (hypervisor/security/); empty costs nothing. */
  readonly observers: VmObserver[] = [];
  /** COM2 (0x2F8, IRQ 3): what the guest sent on it, and a listener. */
  com2Serial = '';
  onCom2: ((text: string) => void) | undefined;

  constructor(
    readonly machine: PcMachine,
    readonly vmMemory: GuestMemory,
    config: VmConfig,
  ) {
    this.id = config.id;
    this.name = config.name;
    this.vcpuCount = config.vcpus;
    this.clock = new ChildClock(machine.timeline, config.clockNs ?? 0);
    this.board = new PcBoard({
      clock: this.clock,
      cpus: config.vcpus,
      memoryBytes: vmMemory.ramBytes,
      lowMemoryBytes: vmMemory.ramBytes,
      kick: () => machine.kick(),
      control: {
        onInit: (i) => {
          const cpu = this.vcpus[i]!.cpu;
          cpu.reset();
          cpu.state = 'wait-for-sipi';
        },
        onStartup: (i, vector) => this.vcpus[i]!.cpu.startupAt(vector),
        onNmi: (i) => this.vcpus[i]!.cpu.raiseNmi(),
      },
      onSerialByte: (b) => this.serialByte(b),
      onCom2Byte: (b) => this.com2Byte(b),
      onDebugExit: (status, value) => this.stop({ reason: 'debug-exit', code: status, detail: `isa-debug-exit value 0x${value.toString(16)}` }),
      // The machine's --rtc choice (a restored VM's RTC comes from its record instead).
      ioapic: true,
      ...(machine.vmRtcEpochSeconds() !== undefined ? { rtcEpochSeconds: machine.vmRtcEpochSeconds()! } : {}),
    });
    ({ io: this.io, pic: this.pic, pit: this.pit, uart: this.uart, cmos: this.cmos, debugExit: this.debugExit, debugcon: this.debugcon } = this.board);
    this.fwCfg = createVmFwCfg(vmMemory, vmMemory.ramBytes, config.vcpus);
    // Snapshots from before VMs had fw_cfg leave it at reset.
    this.board.addDevice(this.fwCfg, { optionalInRecords: true });
    addAcpiPlatformDevices(this);
    // The guest's LAPIC page: EPT maps it (on first access, see mapLapicOnDemand) to a host MMIO
    // window that each vCPU engine routes to its own LAPIC.
    const lapicWindow = GUEST_LAPIC_WINDOW;
    this.localMmio = [
      {
        base: lapicWindow,
        size: 0x1000,
        // With IA32_APIC_BASE.EN clear the page is not the APIC's any more: open bus (all ones, writes dropped).
        read: (cpu, off, size) => {
          this.mmioExits++;
          const lapic = this.vcpus[cpu.index]!.lapic;
          if (!lapic.hardwareEnabled()) return (1n << BigInt(size * 8)) - 1n;
          return BigInt(lapic.mmioRead(off, size as 1 | 2 | 4) >>> 0);
        },
        write: (cpu, off, size, v) => {
          this.mmioExits++;
          const lapic = this.vcpus[cpu.index]!.lapic;
          if (lapic.hardwareEnabled()) lapic.mmioWrite(off, size as 1 | 2 | 4, Number(v & 0xffff_ffffn));
        },
      },
      {
        base: GUEST_IOAPIC_WINDOW,
        size: 0x1000,
        read: (_cpu, off, size) => {
          this.mmioExits++;
          return BigInt(this.board.ioapic!.mmioRead(off, size as 1 | 2 | 4) >>> 0);
        },
        write: (_cpu, off, size, v) => {
          this.mmioExits++;
          this.board.ioapic!.mmioWrite(off, size as 1 | 2 | 4, Number(v & 0xffff_ffffn));
        },
      },
    ];
    // RDTSC reads the VM clock at the running instruction, as a port read does.
    this.tsc = new VmTsc(config.vcpus, () => {
      machine.timeline.advanceTo(machine.now());
      return this.clock.nowNs();
    });
    this.msrExits = new VmMsrs(config.msrFrames, config.vcpus, (cpu) => this.vcpus[cpu.index]!.lapic, this.tsc);
    this.cr8 = { read: (cpu) => this.vcpus[cpu.index]!.lapic.readCr8(), write: (cpu, v) => this.vcpus[cpu.index]!.lapic.writeCr8(v) };
    this.msrExits.onAccess = (cpu, index, write) => {
      for (const o of this.observers) o.msr(cpu, index, write);
    };
    for (let i = 0; i < config.vcpus; i++) this.vcpus.push(new Vcpu(this, i, this, machine));
    for (const v of this.vcpus.slice(1)) v.cpu.state = 'wait-for-sipi';
  }

  /**
   * An EPT violation on the unmapped LAPIC page maps it. Mapping it at the
   * first access rather than at creation saves a VM that never touches its
   * LAPIC two EPT table frames (a PD and a PT for 3-4 GiB): linked clones.
   */
  mapLapicOnDemand(page: number): boolean {
    const window = page === GUEST_LAPIC_GPA ? GUEST_LAPIC_WINDOW : page === GUEST_IOAPIC_GPA ? GUEST_IOAPIC_WINDOW : null;
    if (window === null || this.vmMemory.ept.lookup(page)) return false;
    this.vmMemory.mapMmioWindow(page, window);
    return true;
  }

  // ------------------------------------------------------------ CpuHost
  get memory(): PcMachine['memory'] {
    return this.machine.memory;
  }

  get walkMemory(): GuestMemory['walkMemory'] {
    return this.vmMemory.walkMemory;
  }

  get secondLevel(): GuestMemory['secondLevel'] {
    return this.vmMemory.secondLevel;
  }

  ioRead(cpu: X86Cpu, port: number, size: 1 | 2 | 4): number {
    this.ioExits++;
    for (const o of this.observers) o.io(cpu, port, false);
    this.machine.timeline.advanceTo(this.machine.now());
    return this.io.ioRead(port, size);
  }

  ioWrite(cpu: X86Cpu, port: number, size: 1 | 2 | 4, value: number): void {
    this.ioExits++;
    for (const o of this.observers) o.io(cpu, port, true);
    this.machine.timeline.advanceTo(this.machine.now());
    this.io.ioWrite(port, size, value);
  }

  interruptPending(cpu: X86Cpu): boolean {
    return this.board.interruptPending(cpu.index);
  }

  acknowledgeInterrupt(cpu: X86Cpu): number | null {
    return this.board.acknowledgeInterrupt(cpu.index);
  }

  isWatchedPage(page: number): boolean {
    return this.machine.isWatchedPage(page);
  }

  hasWatchedPages(): boolean {
    return this.machine.hasWatchedPages();
  }

  onWatchedWrite(cpu: X86Cpu, page: number): void {
    this.machine.triggerMonitors(page, 4096, `write by ${this.name} vCPU ${cpu.index}`);
    cpu.requestStop();
  }

  hypercall(cpu: X86Cpu): boolean {
    if (this.observers.length > 0) {
      const fn = Number(cpu.engine.readReg(REG.RAX) & 0xffff_ffffn);
      for (const o of this.observers) o.hypercall(cpu, fn);
    }
    return handleHypercall(this, this.vcpus[cpu.index]!);
  }

  onCodeFetch(cpu: X86Cpu, guestPage: number): void {
    for (const o of this.observers) o.codeFetch(cpu, guestPage);
  }

  // ------------------------------------------------------------ events
  cpuEvent(v: Vcpu, e: CpuEvent): void {
    this.machine.logLazy(e.kind, () => `${this.name} vCPU ${v.index}: ${e.vector !== undefined ? `vector 0x${e.vector.toString(16)} ` : ''}${e.detail ?? ''} rip=0x${e.rip.toString(16)}`);
  }

  private serialByte(b: number): void {
    const ch = String.fromCharCode(b);
    this.serial = appendTranscript(this.serial, ch);
    this.onSerial?.(ch);
    for (const o of this.observers) o.serialByte('com1');
  }

  private com2Byte(b: number): void {
    const ch = String.fromCharCode(b);
    this.com2Serial = appendTranscript(this.com2Serial, ch);
    this.onCom2?.(ch);
    for (const o of this.observers) o.serialByte('com2');
  }

  /** The COM2 UART of the board (host input goes to its receive()). */
  get com2(): Uart16550 {
    return this.board.com2!;
  }

  stop(exit: VmExit): void {
    if (this.state === 'stopped') return;
    this.state = 'stopped';
    this.exit = { ...exit, atNs: exit.atNs ?? this.clock.nowNs() };
    // A stopped VM's timers never wake the machine again.
    this.clock.pause();
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

  // ------------------------------------------------------------ state
  static readonly STATE_VERSION = 1;

  /**
   * The VM's state tree without its memory (that goes as ranges, see
   * GuestMemory.populatedRanges): clock, board devices and vLAPICs, every vCPU
   * in portable form plus its raw context, console, counters and run state.
   * Taken between slices; restore it with Hypervisor.restoreVm().
   */
  saveState(): StateRecord {
    return {
      version: Vm.STATE_VERSION,
      name: this.name,
      vcpus: this.vcpuCount,
      memBytes: this.vmMemory.ramBytes,
      memory: { ranges: this.vmMemory.ranges.map((r) => ({ gpa: r.gpa, length: r.length })) },
      clockNs: this.clock.nowNs(),
      tscOffsets: this.tsc.saveState(),
      board: this.board.saveState(),
      cpus: this.vcpus.map((v) => v.cpu.saveState()),
      counters: this.vcpus.map((v) => ({ ...v.cpu.counters })),
      serial: this.serial,
      com2Serial: this.com2Serial,
      ioExits: this.ioExits,
      mmioExits: this.mmioExits,
      scheduleCursor: this.scheduleCursor,
      // Guest-visible (the CLONE_INDEX hypercall), so it travels with the VM.
      cloneIndex: this.cloneIndex,
      state: this.state,
      exit: this.exit ? { reason: this.exit.reason, code: this.exit.code, detail: this.exit.detail ?? '' } : null,
    };
  }

  /**
   * Loads a record into this freshly built VM (same shape; the clock was
   * started at the record's time by the builder). Devices come after the clock,
   * so their timers re-arm against it.
   */
  restoreState(rec: StateRecord, opts: { portable?: boolean; keepCode?: boolean } = {}): void {
    const who = `vm ${this.name}`;
    checkVersion(rec, Vm.STATE_VERSION, who);
    if (stateNumber(rec, 'vcpus', who) !== this.vcpuCount) throw new StateError(who, 'vcpus', `record has ${rec['vcpus']} vCPUs, this VM ${this.vcpuCount}`);
    if (stateNumber(rec, 'memBytes', who) !== this.vmMemory.ramBytes) throw new StateError(who, 'memBytes', `record has ${rec['memBytes']} bytes of RAM, this VM ${this.vmMemory.ramBytes}`);
    const cpus = rec['cpus'];
    const counters = rec['counters'];
    if (!Array.isArray(cpus) || cpus.length !== this.vcpuCount) throw new StateError(who, 'cpus', `expected ${this.vcpuCount} vCPU records`);
    if (!Array.isArray(counters) || counters.length !== this.vcpuCount) throw new StateError(who, 'counters', `expected ${this.vcpuCount} counter records`);
    const board = stateRecord(rec, 'board', who);
    const state = stateString(rec, 'state', who);
    if (state !== 'running' && state !== 'stopped') throw new StateError(who, 'state', `unknown VM state '${state}'`);
    const exitRec = rec['exit'];
    const serial = stateString(rec, 'serial', who);
    // Absent in records written before COM2's transcript was saved.
    const com2Serial = rec['com2Serial'] === undefined ? '' : stateString(rec, 'com2Serial', who);
    const ioExits = stateNumber(rec, 'ioExits', who);
    const mmioExits = stateNumber(rec, 'mmioExits', who);
    const scheduleCursor = stateNumber(rec, 'scheduleCursor', who);
    if (!Number.isSafeInteger(scheduleCursor) || scheduleCursor < 0) throw new StateError(who, 'scheduleCursor', `${scheduleCursor} is not a count`);
    // Absent in records written before it was saved: those VMs were not clones.
    const cloneIndex = rec['cloneIndex'] ?? null;
    if (cloneIndex !== null && (typeof cloneIndex !== 'number' || !Number.isSafeInteger(cloneIndex) || cloneIndex < 0)) throw new StateError(who, 'cloneIndex', `${String(cloneIndex)} is not a clone index`);
    this.tsc.restoreState(rec['tscOffsets'], who);
    this.board.restoreState(stateRecord(board, 'devices', `${who}.board`), board['lapics'], `${who}.board`);
    this.vcpus.forEach((v, i) => {
      v.cpu.restoreState(cpus[i] as StateRecord, opts);
      const c = counters[i];
      if (c === null || typeof c !== 'object' || Array.isArray(c) || c instanceof Uint8Array) throw new StateError(who, `counters[${i}]`, 'not a record');
      for (const k of Object.keys(v.cpu.counters)) delete v.cpu.counters[k];
      for (const [k, n] of Object.entries(c)) if (typeof n === 'number') v.cpu.counters[k] = n;
    });
    this.serial = serial;
    this.com2Serial = com2Serial;
    this.ioExits = ioExits;
    this.mmioExits = mmioExits;
    this.scheduleCursor = scheduleCursor;
    this.cloneIndex = cloneIndex;
    if (state === 'running') {
      // Loaded in place over a VM that had stopped: it runs again.
      this.state = 'running';
      this.exit = null;
      this.clock.resume();
    } else {
      const e = exitRec !== null && typeof exitRec === 'object' && !Array.isArray(exitRec) && !(exitRec instanceof Uint8Array) ? exitRec : null;
      this.state = 'stopped';
      this.exit = e ? { reason: stateString(e, 'reason', `${who}.exit`) as VmExit['reason'], code: stateNumber(e, 'code', `${who}.exit`), ...(e['detail'] ? { detail: String(e['detail']) } : {}) } : null;
      this.clock.pause();
    }
  }

  /** Loads a record into this running VM in place: its clock goes back to the record's time first, so devices re-arm against it. */
  loadInPlace(rec: StateRecord, opts: { portable?: boolean } = {}): void {
    this.clock.reset(stateNumber(rec, 'clockNs', `vm ${this.name}`));
    this.restoreState(rec, opts);
  }

  /** Frees everything the VM holds: vCPU contexts, timers, guest memory and its control areas. */
  close(): void {
    this.clock.detach();
    for (const v of this.vcpus) v.cpu.close();
    this.msrExits.release();
    this.vmMemory.destroy();
  }
}
