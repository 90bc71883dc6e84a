/**
 * The emulated PC: RAM and firmware ROM, the legacy devices at their PC
 * addresses, one local APIC and one CPU engine per logical CPU, and the
 * deterministic scheduler that runs them on virtual time.
 */
import { Timeline } from '../clock.js';
import { PhysicalMemory } from '../memory/physical-memory.js';
import { X86Cpu, type CpuEvent, type CpuHost, type LocalMmio, type SliceExit } from '../cpu/x86-cpu.js';
import { HostCpu } from '../cpu/host-cpu.js';
import type { IoBus } from '../devices/io-bus.js';
import { Pic8259 } from '../devices/pic8259.js';
import { Pit8254 } from '../devices/pit8254.js';
import { Uart16550 } from '../devices/uart16550.js';
import { CmosRtc } from '../devices/cmos-rtc.js';
import { PostPort } from '../devices/post-port.js';
import { DebugExit } from '../devices/debug-exit.js';
import { Debugcon } from '../devices/debugcon.js';
import { appendTranscript } from '../devices/transcript.js';
import { FwCfg } from '../devices/fw-cfg.js';
import type { LocalApic } from '../devices/lapic.js';
import { PcBoard } from './board.js';
import type { AccessSize } from '../devices/device.js';
import { REG } from '../cpu/unicorn/constants.js';
import { HANDOFF_VMCALL_RAX } from './handoff.js';
import { hasFault, ramFaults, type FaultSpec } from './faults.js';
import { checkVersion, stateBytes, stateNumber, stateRecord, stateString, StateError, type StateRecord } from '../state.js';

export const LAPIC_BASE = 0xfee00000;
/**
 * Host-physical page (above any RAM, below 2^40) where a VM's EPT maps its LAPIC page. Every VM uses
 * the same window: the host CPU routes an access to the devices of the vCPU bound to it.
 */
export const GUEST_LAPIC_WINDOW = 0xf0_0000_0000;
/** The same for a VM's I/O APIC page (0xFEC00000), the page after. */
export const GUEST_IOAPIC_WINDOW = GUEST_LAPIC_WINDOW + 0x1000;
/** Virtual nanoseconds per unit of executed code (one byte of an entered block). */
export const NS_PER_UNIT = 1;
/** Longest a CPU runs before the scheduler looks at the others and the host event loop. */
const QUANTUM_NS = 2_000_000;
export const DEFAULT_TIMER_SLACK_MS = 4;

/**
 * Keeps virtual time from running ahead of the wall clock, anchored so sleep
 * overshoot does not accumulate (1000 timer ticks of 1 ms take ~1 s, not 2-3).
 * When emulation falls behind, it re-anchors instead of racing to catch up.
 *
 * Timer slack, as in Linux: wake-ups are rounded up to a multiple of
 * `slackMs` of wall time, so a guest ticking at 1 kHz costs one host wake-up
 * per slack period instead of one per tick. The guest cannot tell: its clocks
 * are virtual, and every tick still arrives at its exact virtual time; only
 * the wall clock sees the machine up to `slackMs` late.
 */
export class RealtimePacer {
  private wallAnchor = -1;
  private virtAnchor = 0;

  constructor(private readonly slackMs = 0) {}

  /** Milliseconds to sleep before virtual time may reach `deadlineNs`. */
  msUntil(deadlineNs: number, nowNs: number): number {
    const wall = performance.now();
    if (this.wallAnchor < 0) this.anchor(wall, nowNs);
    const due = this.wallAnchor + (deadlineNs - this.virtAnchor) / 1e6;
    const behindBy = wall - (this.wallAnchor + (nowNs - this.virtAnchor) / 1e6);
    if (behindBy > 50) {
      this.anchor(wall, nowNs);
      return (deadlineNs - nowNs) / 1e6;
    }
    if (due <= wall || this.slackMs <= 0) return due - wall;
    return this.wallAnchor + Math.ceil((due - this.wallAnchor) / this.slackMs) * this.slackMs - wall;
  }

  private anchor(wall: number, nowNs: number): void {
    this.wallAnchor = wall;
    this.virtAnchor = nowNs;
  }
}

export type ExitReason = 'debug-exit' | 'halted' | 'triple-fault' | 'timeout' | 'error' | 'stopped';

export interface MachineExit {
  reason: ExitReason;
  /** Process status a QEMU user would see: (v << 1) | 1 for isa-debug-exit, 0 for halt/triple fault. */
  code: number;
  detail?: string;
  atNs: number;
}

export interface PcConfig {
  memBytes: number;
  cpus: number;
  rom: Uint8Array;
  faults?: readonly FaultSpec[];
  seed?: number;
  /** Files for the firmware through fw_cfg (e.g. opt/firmament/next-stage). */
  fwCfgFiles?: readonly { name: string; data: Uint8Array }[];
  /** 'realtime': an idle machine sleeps until the next timer in wall time. 'virtual': it jumps ahead. */
  pace?: 'realtime' | 'virtual';
  /** Realtime pacing: host wake-ups are rounded up to this many ms (see RealtimePacer). Default 4; 0 wakes for every timer. */
  timerSlackMs?: number;
  /** Reset instead of stopping on a triple fault (QEMU's default without -no-reboot). */
  rebootOnTripleFault?: boolean;
  /** RAM bytes from elsewhere (a shared-memory file for live update) instead of a new SharedArrayBuffer. */
  ramBacking?: Uint8Array;
  /** RTC time (Unix seconds, UTC) at virtual time 0, for the machine and the VMs it runs (`--rtc`). Default: a fixed date. */
  rtcEpochSeconds?: number;
}

/**
 * Who runs on the machine's CPUs. Until a hypervisor takes over, the machine
 * schedules its own logical CPUs; afterwards the hypervisor schedules vCPUs.
 */
export interface CpuScheduler {
  /** The execution contexts to run this round, in order. */
  runnable(): readonly X86Cpu[];
  /** Everything that could still wake up (for idle and deadlock decisions). */
  all(): readonly X86Cpu[];
  onSliceExit(cpu: X86Cpu, exit: SliceExit, hostMs: number): void;
  /** A debugger holds this CPU stopped: it neither runs nor takes interrupts until released. */
  frozen?(cpu: X86Cpu): boolean;
  /** Which logical CPU this context runs on (default: its position in runnable()). */
  pcpuFor?(cpu: X86Cpu): number;
  /** Just before the slice: the scheduler may spend virtual time (a switch, a pCPU waiting); true if it did. */
  beginSlice?(cpu: X86Cpu): boolean;
  /** Timer-driven devices of guests keep running on the machine timeline. */
  readonly name: string;
}

export interface MachineEvent {
  atNs: number;
  cpu?: number;
  kind: string;
  detail: string;
}

/**
 * An event whose text is built only when someone reads it: a guest idling on a
 * 1 kHz timer logs two events per tick, and formatting them eagerly cost more
 * host CPU than delivering the interrupt.
 */
class LazyEvent implements MachineEvent {
  private text: string | undefined;
  readonly cpu?: number;

  constructor(
    readonly atNs: number,
    readonly kind: string,
    private readonly format: () => string,
    cpu?: number,
  ) {
    if (cpu !== undefined) this.cpu = cpu;
  }

  get detail(): string {
    this.text ??= this.format();
    return this.text;
  }

  toJSON(): MachineEvent {
    return { atNs: this.atNs, kind: this.kind, detail: this.detail, ...(this.cpu !== undefined ? { cpu: this.cpu } : {}) };
  }
}

export class PcMachine implements CpuHost {
  readonly timeline = new Timeline();
  readonly memory: PhysicalMemory;
  readonly board: PcBoard;
  readonly io: IoBus;
  readonly pic: Pic8259;
  readonly pit: Pit8254;
  readonly uart: Uart16550;
  readonly cmos: CmosRtc;
  readonly post: PostPort;
  readonly debugExit: DebugExit;
  readonly debugcon: Debugcon;
  readonly fwCfg: FwCfg;
  readonly lapics: LocalApic[];
  readonly cpus: X86Cpu[] = [];
  /** One engine per logical CPU; the machine's CPUs and, later, a hypervisor's vCPUs run on them. */
  readonly hostCpus: HostCpu[] = [];
  readonly localMmio: LocalMmio[];
  readonly events: MachineEvent[] = [];
  serial = '';
  exit: MachineExit | null = null;

  onSerial: ((text: string) => void) | undefined;
  /** The lightweight OS's VMCALL handoff (RAX = 'FIRM', RBX = block); unset means VMCALL raises #UD, as on QEMU. */
  onHandoff: ((blockAddress: number, cpu: X86Cpu) => void) | undefined;
  onPostCode: ((code: number, atNs: number) => void) | undefined;
  onEvent: ((ev: MachineEvent) => void) | undefined;

  private active: X86Cpu | null = null;
  private sliceStartNs = 0;
  private sliceStartUnits = 0n;
  private watched = new Set<number>();
  private wakeHost: (() => void) | null = null;
  private pausedFlag = false;
  private readonly pacer: RealtimePacer;
  /** Set by a hypervisor at takeover; null while the machine runs its own CPUs. */
  scheduler: CpuScheduler | null = null;
  private readonly config: Required<Omit<PcConfig, 'fwCfgFiles' | 'ramBacking' | 'rtcEpochSeconds'>> & Pick<PcConfig, 'fwCfgFiles' | 'ramBacking' | 'rtcEpochSeconds'>;

  constructor(config: PcConfig) {
    this.config = { faults: [], seed: 0, pace: 'realtime', rebootOnTripleFault: false, timerSlackMs: DEFAULT_TIMER_SLACK_MS, ...config };
    this.pacer = new RealtimePacer(this.config.timerSlackMs);
    const faults = this.config.faults;
    if (config.cpus < 1 || config.cpus > 64) throw new Error(`--cpus ${config.cpus}: must be between 1 and 64`);
    this.memory = new PhysicalMemory(config.memBytes, config.rom, ramFaults(faults, this.config.seed), config.ramBacking);
    const clock = this.timeline;
    this.board = new PcBoard({
      clock,
      cpus: config.cpus,
      memoryBytes: config.memBytes,
      lowMemoryBytes: this.memory.lowRamTop,
      kick: () => this.kick(),
      control: { onInit: (i) => this.initCpu(i), onStartup: (i, vector) => this.startCpu(i, vector), onNmi: (i) => this.cpus[i]!.raiseNmi() },
      onSerialByte: (b) => this.serialByte(b),
      onDebugExit: (status, value) => this.finish({ reason: 'debug-exit', code: status, detail: `isa-debug-exit value 0x${value.toString(16)}`, atNs: this.now() }),
      onDebugconByte: (b) => this.log('debugcon', String.fromCharCode(b)),
      faults: { pitStuck: hasFault(faults, 'pit-stuck'), uartDead: hasFault(faults, 'uart-dead'), cmosBadChecksum: hasFault(faults, 'cmos-checksum') },
      ...(config.rtcEpochSeconds !== undefined ? { rtcEpochSeconds: config.rtcEpochSeconds } : {}),
    });
    ({ io: this.io, pic: this.pic, pit: this.pit, uart: this.uart, cmos: this.cmos, debugExit: this.debugExit, debugcon: this.debugcon, lapics: this.lapics } = this.board);
    this.post = new PostPort({ clock, onCode: (code, atNs) => this.postCode(code, atNs) });
    // Room for a container set well beyond QEMU's default 32 slots.
    this.fwCfg = new FwCfg({ memory: this.memory, ramBytes: config.memBytes, cpus: config.cpus, fileSlots: 256 });
    for (const f of config.fwCfgFiles ?? []) this.fwCfg.addFile(f.name, f.data);
    this.fwCfg.addFile('etc/e820', this.e820Table());
    this.board.addDevice(this.post);
    this.board.addDevice(this.fwCfg);

    this.localMmio = [
      {
        base: LAPIC_BASE,
        size: 0x1000,
        read: (cpu, off, size) => BigInt(this.lapics[cpu.index]!.mmioRead(off, size as AccessSize) >>> 0),
        write: (cpu, off, size, v) => this.lapics[cpu.index]!.mmioWrite(off, size as AccessSize, Number(v & 0xffff_ffffn)),
      },
    ];
    for (let i = 0; i < config.cpus; i++) {
      this.hostCpus.push(new HostCpu(i, this.memory, [{ base: LAPIC_BASE, size: 0x1000 }, { base: GUEST_LAPIC_WINDOW, size: 0x1000 }, { base: GUEST_IOAPIC_WINDOW, size: 0x1000 }]));
      const cpu = new X86Cpu(i, i, this, { apicId: i, logicalCpus: config.cpus }, this.hostCpus[i]);
      cpu.onEvent = (e) => this.cpuEvent(cpu, e);
      this.cpus.push(cpu);
    }
    this.memory.onHostWrite((addr, len) => this.hostWrote(addr, len));
  }

  /** QEMU-style etc/e820 table: {u64 addr, u64 len, u32 type} per RAM range. */
  private e820Table(): Uint8Array {
    const ranges: [number, number][] = [[0, this.memory.lowRamTop]];
    if (this.config.memBytes > this.memory.lowRamTop) ranges.push([4 * 1024 ** 3, this.config.memBytes - this.memory.lowRamTop]);
    const out = new Uint8Array(20 * ranges.length);
    const dv = new DataView(out.buffer);
    ranges.forEach(([a, l], i) => {
      dv.setBigUint64(i * 20, BigInt(a), true);
      dv.setBigUint64(i * 20 + 8, BigInt(l), true);
      dv.setUint32(i * 20 + 16, 1, true);
    });
    return out;
  }

  // ---------------------------------------------------------------- time
  now(): number {
    if (this.active) return this.sliceStartNs + Number(this.active.units - this.sliceStartUnits) * NS_PER_UNIT;
    return this.timeline.nowNs();
  }

  /** Bring device time up to the running CPU's instruction stream; fires due timers. */
  private syncTime(): void {
    this.timeline.advanceTo(this.now());
  }

  /** Something needs a CPU's attention (an IRQ): end the running slice at the next block. */
  /** Where the RTC of a VM created now starts: the `--rtc` base plus the machine's time so far (undefined: the fixed default). */
  vmRtcEpochSeconds(): number | undefined {
    const base = this.config.rtcEpochSeconds;
    return base === undefined ? undefined : base + Math.floor(this.now() / 1e9);
  }

  kick(): void {
    this.active?.requestStop();
    this.wakeHost?.();
  }

  // ---------------------------------------------------------------- CpuHost
  ioRead(_cpu: X86Cpu, port: number, size: 1 | 2 | 4): number {
    this.syncTime();
    return this.io.ioRead(port, size);
  }

  ioWrite(_cpu: X86Cpu, port: number, size: 1 | 2 | 4, value: number): void {
    this.syncTime();
    this.io.ioWrite(port, size, value);
  }

  interruptPending(cpu: X86Cpu): boolean {
    return this.board.interruptPending(cpu.index);
  }

  acknowledgeInterrupt(cpu: X86Cpu): number | null {
    return this.board.acknowledgeInterrupt(cpu.index);
  }

  isWatchedPage(page: number): boolean {
    return this.watched.has(page);
  }

  hasWatchedPages(): boolean {
    return this.watched.size > 0;
  }

  onWatchedWrite(writer: X86Cpu, page: number): void {
    this.triggerMonitors(page, 4096, `write by CPU ${writer.index}`);
    writer.requestStop();
  }

  triggerMonitors(addr: number, len: number, why: string): void {
    for (const c of this.scheduler ? this.scheduler.all() : this.cpus) {
      const m = c.monitor;
      if (!m || m.paddr + 64 <= addr || m.paddr >= addr + len) continue;
      m.triggered = true;
      if (c.state === 'mwait') c.wake(`monitored line 0x${m.paddr.toString(16)}: ${why}`);
    }
  }

  private hostWrote(addr: number, len: number): void {
    // Each CPU drops its own translated code (X86Cpu subscribes); the running one must stop to do it.
    this.active?.requestStop();
    this.triggerMonitors(addr, len, 'device write');
  }

  /** Keep the watched-page set equal to the armed monitors; other CPUs must refill their TLBs. */
  private refreshWatches(): void {
    const cpus = this.scheduler ? this.scheduler.all() : this.cpus;
    if (this.watched.size === 0 && !cpus.some((c) => c.monitor)) return;
    const pages = new Set<number>();
    for (const c of cpus) if (c.monitor && !c.monitor.triggered) pages.add(c.monitor.paddr - (c.monitor.paddr % 4096));
    const changed = pages.size !== this.watched.size || [...pages].some((p) => !this.watched.has(p));
    this.watched = pages;
    if (changed && pages.size > 0) for (const c of this.scheduler ? this.scheduler.all() : this.cpus) c.engine.flushTlb();
  }

  private initCpu(index: number): void {
    const cpu = this.cpus[index];
    if (!cpu) return;
    cpu.reset();
    cpu.state = 'wait-for-sipi';
    this.log('ipi', `INIT: CPU ${index} waits for SIPI`, index);
  }

  private startCpu(index: number, vector: number): void {
    const cpu = this.cpus[index];
    if (!cpu) return;
    cpu.startupAt(vector);
    this.log('ipi', `SIPI: CPU ${index} starts at 0x${(vector << 12).toString(16)}`, index);
  }

  /** VMCALL on bare metal: only the handoff, and only when someone takes the machine over. */
  hypercall(cpu: X86Cpu): boolean {
    if (!this.onHandoff) return false;
    const rax = Number(cpu.engine.readReg(REG.RAX) & 0xffff_ffffn);
    if (rax !== HANDOFF_VMCALL_RAX) return false;
    const block = Number(cpu.engine.readReg(REG.RBX));
    this.log('handoff', `VMCALL handoff from CPU ${cpu.index}: block at 0x${block.toString(16)}`, cpu.index);
    // The machine's CPUs are parked from here on; whoever takes over schedules its own contexts.
    for (const c of this.cpus) c.state = 'shutdown';
    cpu.requestStop();
    this.onHandoff(block, cpu);
    return true;
  }

  // ---------------------------------------------------------------- outputs
  private serialByte(b: number): void {
    const ch = String.fromCharCode(b);
    this.serial = appendTranscript(this.serial, ch);
    this.onSerial?.(ch);
  }

  private postCode(code: number, atNs: number): void {
    this.onPostCode?.(code, atNs);
  }

  private cpuEvent(cpu: X86Cpu, e: CpuEvent): void {
    this.logLazy(e.kind, () => `${e.vector !== undefined ? `vector 0x${e.vector.toString(16)} ` : ''}${e.detail ?? ''} rip=0x${e.rip.toString(16)}`.trim(), cpu.index);
  }

  log(kind: string, detail: string, cpu?: number): void {
    this.logLazy(kind, () => detail, cpu);
  }

  /** Logs an event whose text is formatted only if it is ever read. */
  logLazy(kind: string, detail: () => string, cpu?: number): void {
    const ev = new LazyEvent(this.now(), kind, detail, cpu);
    // Bounded log, trimmed in batches so logging stays O(1) amortised.
    if (this.events.length >= 12_000) this.events.splice(0, 2_000);
    this.events.push(ev);
    this.onEvent?.(ev);
  }

  finish(exit: MachineExit): void {
    if (this.exit) return;
    this.exit = exit;
    this.log('exit', `${exit.reason} code ${exit.code}${exit.detail ? `: ${exit.detail}` : ''}`);
    this.kick();
  }

  stop(detail = 'stopped by the host'): void {
    this.finish({ reason: 'stopped', code: 0, detail, atNs: this.now() });
  }

  // ---------------------------------------------------------------- scheduling
  get paused(): boolean {
    return this.pausedFlag;
  }

  /** Stops at the next block boundary of the running CPU (debuggers, the monitor). */
  pause(): void {
    this.pausedFlag = true;
    this.kick();
  }

  /**
   * Stops at the end of the current scheduling round without cutting the
   * running slice short. Where slices end decides where an interrupt held back
   * by IF=0 is delivered and which vCPU runs next, so a run paused this way
   * (and snapshotted in the pause) goes on exactly as if it never stopped.
   */
  pauseAfterRound(): void {
    this.pausedFlag = true;
    this.wakeHost?.();
  }

  resume(): void {
    this.pausedFlag = false;
    this.wakeHost?.();
  }

  /** Executes exactly one instruction on one CPU, or on a scheduled vCPU (debugger single-step). */
  stepInstruction(which: number | X86Cpu): SliceExit {
    const cpu = typeof which === 'number' ? this.cpus[which] : which;
    if (!cpu) throw new Error(`no CPU ${String(which)}`);
    cpu.serviceInterrupts();
    this.active = cpu;
    this.sliceStartNs = this.timeline.nowNs();
    this.sliceStartUnits = cpu.units;
    let ex: SliceExit;
    try {
      ex = cpu.runSlice(1n << 40n, 1);
    } finally {
      const end = this.now();
      this.active = null;
      this.timeline.advanceTo(end);
    }
    if (this.scheduler && !this.cpus.includes(cpu)) this.scheduler.onSliceExit(cpu, ex, 0);
    else this.handleSliceExit(cpu, ex);
    return ex;
  }

  /** One scheduling round over every runnable CPU. Returns false when nothing could run. */
  step(maxNs = QUANTUM_NS): boolean {
    const sched = this.scheduler;
    for (const c of sched ? sched.all() : this.cpus) if (!sched?.frozen?.(c)) c.serviceInterrupts();
    this.refreshWatches();
    let ran = false;
    let slot = 0;
    for (const cpu of sched ? sched.runnable() : this.cpus) {
      if (this.exit) break;
      if (sched) {
        cpu.placeOn(this.hostCpus[(sched.pcpuFor?.(cpu) ?? slot) % this.hostCpus.length]!);
        slot++;
        if (sched.beginSlice?.(cpu)) ran = true;
      }
      if (cpu.state !== 'running') continue;
      ran = true;
      const deadline = Math.min(this.timeline.nextDeadline(), this.timeline.nowNs() + maxNs);
      const budget = BigInt(Math.max(1, Math.ceil((deadline - this.timeline.nowNs()) / NS_PER_UNIT)));
      this.active = cpu;
      this.sliceStartNs = this.timeline.nowNs();
      this.sliceStartUnits = cpu.units;
      let ex: SliceExit;
      const host0 = performance.now();
      try {
        ex = cpu.runSlice(budget);
      } finally {
        const end = this.now();
        this.active = null;
        this.timeline.advanceTo(end);
      }
      if (sched) sched.onSliceExit(cpu, ex, performance.now() - host0);
      else this.handleSliceExit(cpu, ex);
      cpu.serviceInterrupts();
    }
    return ran;
  }

  private handleSliceExit(cpu: X86Cpu, ex: SliceExit): void {
    if (ex.kind === 'error') {
      this.finish({ reason: 'error', code: 2, detail: ex.message, atNs: this.now() });
    } else if (ex.kind === 'triple-fault') {
      if (this.config.rebootOnTripleFault) {
        this.log('reset', `triple fault on CPU ${cpu.index}: machine reset`);
        for (const c of this.cpus) {
          c.reset();
          c.state = c.index === 0 ? 'running' : 'wait-for-sipi';
        }
      } else {
        this.finish({ reason: 'triple-fault', code: 0, detail: `CPU ${cpu.index}: ${ex.reason}`, atNs: this.now() });
      }
    }
  }

  /** A CPU can run now, or has an interrupt waiting. */
  private anyoneWakes(): boolean {
    for (const c of this.scheduler ? this.scheduler.all() : this.cpus) if (c.state === 'running' || c.hasPendingInterrupt()) return true;
    return false;
  }

  /** True when no CPU can ever run again: all asleep, and no timer or interrupt can wake any of them. */
  private deadlocked(): boolean {
    if (this.serving) return false;
    const all = this.scheduler ? this.scheduler.all() : this.cpus;
    if (all.some((c) => c.state === 'running')) return false;
    if (all.every((c) => !c.canBeWokenByInterrupt())) return true;
    return this.timeline.nextDeadline() === Infinity && !this.interactive;
  }

  /** Outside input (serial console, monitor) may still arrive: never call an idle machine dead. */
  interactive = false;
  /** A service machine (firmament serve): VMs come and go, so one with none, or all asleep, waits for the host. */
  serving = false;

  /**
   * Runs until the machine exits or `timeoutMs` of wall time passes. Idle CPUs
   * sleep the host thread until the next timer deadline: no busy waiting.
   */
  async run(opts: { timeoutMs?: number } = {}): Promise<MachineExit> {
    const wallStart = performance.now();
    let lastYield = wallStart;
    while (!this.exit) {
      const wall = performance.now();
      if (opts.timeoutMs !== undefined && wall - wallStart > opts.timeoutMs) {
        this.finish({ reason: 'timeout', code: 124, detail: `no exit after ${opts.timeoutMs} ms`, atNs: this.now() });
        break;
      }
      if (this.pausedFlag) {
        await this.sleep(opts.timeoutMs !== undefined ? Math.max(1, opts.timeoutMs - (wall - wallStart)) : 1e9);
        continue;
      }
      const ran = this.step();
      if (!ran && !this.exit) {
        if (this.deadlocked()) {
          const allHalted = (this.scheduler ? this.scheduler.all() : this.cpus).every((c) => c.state === 'halted' || c.state === 'wait-for-sipi' || c.state === 'shutdown');
          this.finish({ reason: 'halted', code: 0, detail: allHalted ? 'all CPUs halted with no pending event' : 'all CPUs waiting with no pending event', atNs: this.now() });
          break;
        }
        // Idle: move virtual time to the next deadline, sleeping until that moment in real time.
        const deadline = this.timeline.nextDeadline();
        if (this.config.pace === 'realtime') {
          const sleepMs = this.pacer.msUntil(deadline, this.timeline.nowNs());
          // Waits shorter than a host timer tick are skipped, not slept: the futex round trip costs more than it saves.
          if (sleepMs > 0.05) {
            // Never past --timeout: with no deadline at all (an interactive machine whose CPUs wait for input) it is the only bound.
            const left = opts.timeoutMs !== undefined ? Math.max(1, opts.timeoutMs - (performance.now() - wallStart)) : Infinity;
            const interrupted = await this.sleep(Math.min(sleepMs, left));
            if (interrupted || left < sleepMs) continue;
          }
        }
        this.timeline.advanceTo(deadline);
        // Device transitions a few microseconds apart (a PIT's OUT pulse: low, then high a clock
        // later) are taken together, so an idle guest costs one scheduling round per tick, not two.
        for (let i = 0; i < 16 && !this.anyoneWakes() && this.timeline.nextDeadline() - this.timeline.nowNs() < 10_000; i++) this.timeline.advanceTo(this.timeline.nextDeadline());
      }
      if (performance.now() - lastYield > 15) {
        await new Promise<void>((r) => setImmediate(r));
        lastYield = performance.now();
      }
    }
    return this.exit!;
  }

  private readonly futex = new Int32Array(new SharedArrayBuffer(4));

  /**
   * Sleeps the host thread (no spinning); returns true if woken early by an
   * event. Short waits block in the kernel with Atomics.wait (a futex: about a
   * third of the host CPU of a timer round trip through the event loop, which
   * matters for guests that tick at 1 kHz); longer ones use a timer so host
   * events (monitor, serial input) can end them.
   */
  private sleep(ms: number): Promise<boolean> {
    if (ms < 4) {
      Atomics.wait(this.futex, 0, 0, ms);
      return Promise.resolve(false);
    }
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.wakeHost = null;
        resolve(false);
      }, Math.min(ms, 2 ** 31 - 1));
      this.wakeHost = () => {
        clearTimeout(t);
        this.wakeHost = null;
        resolve(true);
      };
    });
  }

  /** Feed bytes to COM1 as if typed on the serial line. */
  serialInput(bytes: Uint8Array): void {
    this.uart.receive(bytes);
    this.kick();
  }

  // ---------------------------------------------------------------- state
  readonly snapshotId = 'pc';
  readonly stateVersion = 1;

  /**
   * The whole machine between slices: RAM, every CPU, every device, LAPICs and
   * virtual time. The same records drive snapshot, migration and live update.
   */
  saveState(): StateRecord {
    if (this.active) throw new StateError('pc', 'active', 'cannot save while a CPU is running');
    // The machine record covers RAM, CPUs and devices; a hypervisor's VMs (vCPU contexts, per-VM
    // devices and clocks) live outside it, and a restore would silently restart them.
    if (this.scheduler) throw new StateError('pc', 'scheduler', `the ${this.scheduler.name} has taken this machine over, and its VMs are not part of the machine record; save each VM instead (firmament snapshot save, Hypervisor.snapshotVm)`);
    return {
      version: this.stateVersion,
      memBytes: this.config.memBytes,
      cpuCount: this.cpus.length,
      nowNs: this.timeline.nowNs(),
      ram: this.memory.ram.slice(),
      cpus: this.cpus.map((c) => c.saveState()),
      devices: Object.fromEntries(this.io.devices().map((d) => [d.snapshotId, d.saveState()])),
      lapics: this.lapics.map((l) => l.saveState()),
      serial: this.serial,
    };
  }

  /** Restores a record from saveState() into a machine built with the same configuration. */
  restoreState(rec: StateRecord): void {
    checkVersion(rec, this.stateVersion, 'pc');
    if (stateNumber(rec, 'memBytes', 'pc') !== this.config.memBytes) throw new StateError('pc', 'memBytes', `snapshot has ${rec['memBytes']} bytes of RAM, this machine ${this.config.memBytes}`);
    if (stateNumber(rec, 'cpuCount', 'pc') !== this.cpus.length) throw new StateError('pc', 'cpuCount', `snapshot has ${rec['cpuCount']} CPUs, this machine ${this.cpus.length}`);
    const ram = stateBytes(rec, 'ram', 'pc', this.memory.ram.length);
    const cpus = rec['cpus'];
    const lapics = rec['lapics'];
    if (!Array.isArray(cpus) || cpus.length !== this.cpus.length) throw new StateError('pc', 'cpus', 'wrong CPU list');
    if (!Array.isArray(lapics) || lapics.length !== this.lapics.length) throw new StateError('pc', 'lapics', 'wrong LAPIC list');
    const devices = stateRecord(rec, 'devices', 'pc');
    // Time first: devices re-arm their timers against the restored clock.
    this.timeline.reset(stateNumber(rec, 'nowNs', 'pc'));
    this.memory.ram.set(ram);
    for (const d of this.io.devices()) d.restoreState(stateRecord(devices, d.snapshotId, 'pc.devices'));
    this.lapics.forEach((l, i) => l.restoreState(lapics[i] as StateRecord));
    this.cpus.forEach((c, i) => c.restoreState(cpus[i] as StateRecord));
    this.serial = stateString(rec, 'serial', 'pc');
    this.exit = null;
  }

  close(): void {
    for (const c of this.cpus) c.close();
    for (const h of this.hostCpus) h.close();
  }
}
