/**
 * The debugger over a PcMachine: pause/resume, single-step, breakpoints
 * (linear, physical, POST code), physical-range watches and "run to the next
 * mode switch" (Bochs modebp).
 *
 * Cost model: with no breakpoint and no watch it adds nothing to the run
 * loop. Linear/physical breakpoints are Unicorn code hooks on exactly their
 * addresses. POST breakpoints ride on the POST port callback. Watches and
 * mode-switch runs wrap PcMachine.step() only while armed, with a shorter
 * quantum so the stop lands close to the write or switch.
 */
import type { PcMachine } from '../platform/pc.js';
import type { X86Cpu, SliceExit } from '../cpu/x86-cpu.js';
import type { CpuMode } from '../cpu/x86/registers.js';
import { cpuLocation } from '../inspect/cpu-view.js';
import { linearAliases } from '../inspect/reverse-map.js';
import { readPhysical } from '../inspect/memory-view.js';
import { hex, hex64, nsToMs } from '../inspect/hex.js';
import { describePostCode, hex2 } from '../platform/post-codes.js';
import { chainListener } from './listeners.js';
import { formatBreakpointSpec, type BreakpointSpec, type WatchSpec } from './specs.js';

/** Scheduling quantum (virtual ns = code units) while a mode-switch run is armed. */
export const MODE_SWITCH_QUANTUM_NS = 256;
/** Scheduling quantum while a watch is set: the write is reported within about this much code. */
export const WATCH_QUANTUM_NS = 16_384;
/** Most aliases a physical breakpoint hooks. */
const MAX_ALIASES = 16;

export interface WatchWrite {
  address: string;
  old: number | null;
  new: number | null;
}

interface StopBase {
  /** Increases with every stop; lets clients tell a new stop from the last one. */
  seq: number;
  atMs: number;
  message: string;
  cpu: number | null;
}

export type StopInfo = StopBase &
  (
    | { reason: 'pause' }
    | { reason: 'step'; exit: SliceExit['kind'] }
    | { reason: 'breakpoint'; breakpoint: number; address: string }
    | { reason: 'post-code'; breakpoint: number; code: string; name: string }
    | { reason: 'watch'; watch: number; writes: WatchWrite[] }
    | { reason: 'access-watch'; watch: number; access: 'read' | 'write'; address: string; size: number }
    | { reason: 'mode-switch'; from: CpuMode; to: CpuMode }
    | { reason: 'exit'; exitReason: string; code: number }
  );

type StopDetail = StopInfo extends infer S ? (S extends StopInfo ? Omit<S, 'seq' | 'atMs'> : never) : never;

export interface BreakpointView {
  id: number;
  kind: BreakpointSpec['kind'];
  text: string;
  hits: number;
  /** Linear addresses hooked for a physical breakpoint, per CPU, as last resolved. */
  resolved?: string[];
}

export interface WatchView {
  id: number;
  address: string;
  length: number;
  hits: number;
}

export type RunState = 'running' | 'paused' | 'exited';

export interface DebuggerStatus {
  state: RunState;
  lastStop: StopInfo | null;
  breakpoints: BreakpointView[];
  watches: WatchView[];
  modeSwitchArmed: boolean;
  exit: { reason: string; code: number; detail?: string } | null;
  nowMs: number;
  cpus: number;
}

interface Breakpoint {
  id: number;
  spec: BreakpointSpec;
  hits: number;
  /** Installed code hooks (linear and physical kinds): one per host engine the CPU may run on. */
  hooks: { cpu: X86Cpu; linear: bigint; handles: EngineHook[] }[];
}

/** Which data accesses an access watch stops on (gdb's watch, rwatch and awatch). */
export type AccessWatchKind = 'write' | 'read' | 'access';

export interface AccessWatchSpec {
  /** Linear (virtual) address, as the CPU's current mappings see it. */
  linear: bigint;
  length: number;
  kind: AccessWatchKind;
  /**
   * Where the range is in host-physical memory, one piece per page run
   * (resolved by the caller through the guest's tables and the EPT when the
   * watch is set): Unicorn matches memory hooks on physical addresses.
   */
  pieces: readonly { linear: bigint; hostPhysical: bigint; length: number }[];
}

interface AccessWatch extends AccessWatchSpec {
  id: number;
  hits: number;
  hooks: EngineHook[];
}

/** A hook on one host engine (engines run whichever CPU context the scheduler binds). */
interface EngineHook {
  engine: X86Cpu['engine'];
  handle: bigint;
}

interface Watch {
  id: number;
  address: bigint;
  length: number;
  hits: number;
  last: (number | null)[];
}

export type StopListener = (stop: StopInfo) => void;

/**
 * What a debugger stops and starts: the whole machine (the default), or one
 * VM under the hypervisor while the others keep running (the gdb stub's
 * per-VM targets). Stops found by hooks pause through it; resume and step go through it.
 */
export interface RunControl {
  readonly paused: boolean;
  pause(): void;
  resume(): void;
  /** Why the debugged CPUs can never run again (the machine's or the VM's exit), or null. */
  readonly exit: { reason: string; code: number; detail?: string } | null;
  /** Whether `cpu` can be single-stepped alone; if not, why. */
  canStep(cpu: X86Cpu): true | string;
}

/** The whole machine: the default run control. */
export function machineRunControl(machine: PcMachine): RunControl {
  return {
    get paused() {
      return machine.paused;
    },
    pause: () => machine.pause(),
    resume: () => machine.resume(),
    get exit() {
      return machine.exit;
    },
    canStep: (cpu) => (machine.cpus.includes(cpu) && !machine.scheduler ? true : `CPU ${cpu.index} is scheduled by the ${machine.scheduler?.name ?? 'hypervisor'}`),
  };
}

/** Something that runs after every scheduling round while armed, with the quantum it needs. */
interface RoundHook {
  quantum(): number;
  after(): void;
}

const roundHooks = new WeakMap<PcMachine, Set<RoundHook>>();

/**
 * Several debuggers (the monitor's, a gdb stub per VM) may each need a short
 * quantum and a look after each round: one wrapper around PcMachine.step
 * serves them all, and is removed when the last one goes.
 */
function setRoundHook(m: PcMachine, hook: RoundHook, on: boolean): void {
  let set = roundHooks.get(m);
  if (on) {
    if (!set) {
      const hooks = new Set<RoundHook>();
      roundHooks.set(m, (set = hooks));
      const original = Object.getPrototypeOf(m).step as PcMachine['step'];
      (m as PcMachine & { step: PcMachine['step'] }).step = (maxNs?: number): boolean => {
        let quantum = maxNs ?? Infinity;
        for (const h of hooks) quantum = Math.min(quantum, h.quantum());
        const ran = original.call(m, quantum);
        for (const h of [...hooks]) h.after();
        return ran;
      };
    }
    set.add(hook);
  } else if (set?.delete(hook) && set.size === 0) {
    roundHooks.delete(m);
    // Back to the prototype's step: no per-round cost at all.
    delete (m as unknown as Record<string, unknown>)['step'];
  }
}

/**
 * Code translated before a hook was added (or removed) keeps its old
 * instrumentation: drop the translation of that one address. A full flush
 * would work too but costs ~100 ms in Unicorn.
 */
/**
 * Code translated before a hook was added (or removed) keeps its old hook calls. Where the CPU
 * is bound, drop the block at its linear address; other engines may hold blocks it ran there
 * before the scheduler moved it, translated under its mappings, so they drop everything.
 */
function dropTranslation(cpu: X86Cpu, engine: X86Cpu['engine'], linear: bigint): void {
  if (!cpu.residentOn(engine)) {
    engine.flushCode();
    return;
  }
  try {
    engine.invalidateCode(Number(linear), Number(linear) + 1);
  } catch {
    // Not mapped now: nothing was translated there under the current mapping.
  }
}

export class Debugger {
  private readonly breakpoints = new Map<number, Breakpoint>();
  private readonly watches = new Map<number, Watch>();
  private readonly accessWatches = new Map<number, AccessWatch>();
  /** Per host engine: the every-instruction hook that makes access-watch stops exact, and its users. */
  private readonly exactStops = new Map<X86Cpu['engine'], { handle: bigint; users: number }>();
  private readonly listeners = new Set<StopListener>();
  private readonly detachers: (() => void)[] = [];
  private nextId = 1;
  private seq = 0;
  private pending: StopDetail | null = null;
  private flushScheduled = false;
  private exitReported = false;
  /** While stepping, stops found by hooks are reported as the step's result. */
  private stepping = false;
  /** CPU -> linear address whose breakpoint the next instruction must not trigger. */
  private readonly skip = new Map<X86Cpu, bigint>();
  private modeArm: CpuMode[] | null = null;
  /** Modes when the current round started (mode-switch runs). */
  private roundModes: CpuMode[] | null = null;
  private stepWrapped = false;
  private readonly roundHook: RoundHook = {
    quantum: () => {
      this.roundModes = this.modeArm;
      // After a single-step, one tiny round lets Unicorn drop its count hook before the flush.
      return this.flushAfterRound.size > 0 ? 1 : this.modeArm ? MODE_SWITCH_QUANTUM_NS : this.watches.size > 0 ? WATCH_QUANTUM_NS : Infinity;
    },
    after: () => this.afterRound(this.roundModes),
  };
  readonly control: RunControl;
  /**
   * CPUs that were single-stepped. Unicorn deletes its instruction-count hook
   * lazily, so code translated in the next run keeps a per-instruction call
   * (about 20x slower) until the translation cache is flushed once more.
   */
  private readonly flushAfterRound = new Set<X86Cpu>();
  lastStop: StopInfo | null = null;

  private readonly cpus: () => readonly X86Cpu[];

  /** `cpus`: every CPU to debug, machine CPUs first (default: the machine's); guest vCPUs can follow. */
  constructor(
    readonly machine: PcMachine,
    opts: { cpus?: () => readonly X86Cpu[]; control?: RunControl } = {},
  ) {
    this.cpus = opts.cpus ?? (() => machine.cpus);
    this.control = opts.control ?? machineRunControl(machine);
    this.detachers.push(chainListener(machine, 'onPostCode', (code) => this.postCodeWritten(code)));
    this.detachers.push(
      chainListener(machine, 'onEvent', (ev) => {
        if ((ev.kind === 'exit' || ev.kind === 'vm-exit') && this.control.exit && !this.exitReported) {
          this.exitReported = true;
          this.stopLater({ reason: 'exit', exitReason: this.control.exit.reason, code: this.control.exit.code, cpu: null, message: `${ev.kind === 'exit' ? 'machine exit' : 'VM exit'}: ${ev.detail}` });
        }
      }),
    );
  }

  // ------------------------------------------------------------------ state
  get state(): RunState {
    if (this.control.exit) return 'exited';
    return this.control.paused ? 'paused' : 'running';
  }

  status(): DebuggerStatus {
    const exit = this.control.exit;
    return {
      state: this.state,
      lastStop: this.lastStop,
      breakpoints: this.listBreakpoints(),
      watches: [...this.watches.values()].map((w) => ({ id: w.id, address: hex(w.address), length: w.length, hits: w.hits })),
      modeSwitchArmed: this.modeArm !== null,
      exit: exit ? { reason: exit.reason, code: exit.code, ...(exit.detail ? { detail: exit.detail } : {}) } : null,
      nowMs: nsToMs(this.machine.now()),
      cpus: this.cpus().length,
    };
  }

  onStop(listener: StopListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  // ------------------------------------------------------------------ run control
  pause(): StopInfo | null {
    if (this.state !== 'running') return null;
    this.control.pause();
    return this.stopNow({ reason: 'pause', cpu: null, message: 'paused' });
  }

  resume(): void {
    if (this.control.exit) throw new Error(`the machine has exited (${this.control.exit.reason}); nothing to resume`);
    if (!this.control.paused) return;
    this.pending = null;
    this.resolvePhysicalBreakpoints();
    this.stepOverBreakpoints();
    if (this.pending) {
      // Stepping over a breakpoint hit something else (a POST code, a watch): stay paused.
      this.flushStop();
      return;
    }
    this.updateStepWrapper();
    this.control.resume();
  }

  /**
   * Executes `count` instructions on one CPU (pausing first if needed). A
   * halted CPU first waits, in virtual time, for the next timer event.
   */
  step(cpuIndex: number, count = 1): StopInfo {
    const cpu = this.cpus()[cpuIndex];
    if (!cpu) throw new RangeError(`no CPU ${cpuIndex} (there are ${this.cpus().length})`);
    if (this.control.exit) throw new Error(`the machine has exited (${this.control.exit.reason})`);
    const can = this.control.canStep(cpu);
    if (can !== true) throw new Error(`cannot single-step CPU ${cpuIndex}: ${can}`);
    if (!this.control.paused) this.control.pause();
    this.pending = null;
    let exit: SliceExit['kind'] = 'preempted';
    const modes = this.modeArm ? this.currentModes() : null;
    this.stepping = true;
    try {
      for (let i = 0; i < Math.max(1, count) && !this.control.exit; i++) {
        if (cpu.state === 'wait-for-sipi' || cpu.state === 'shutdown') {
          return this.stopNow({ reason: 'step', exit: 'halted', cpu: cpuIndex, message: `CPU ${cpuIndex} is in ${cpu.state}: nothing to step` });
        }
        if (cpu.state !== 'running') this.waitForWake(cpu);
        this.skipBreakpointAt(cpu);
        exit = this.machine.stepInstruction(cpu).kind;
        this.flushAfterRound.add(cpu);
        this.skip.delete(cpu);
        this.checkWatches();
        if (this.pending) break;
      }
    } finally {
      this.stepping = false;
    }
    if (modes) this.checkModes(modes);
    if (this.pending) return this.flushStop()!;
    const loc = cpuLocation(cpu);
    return this.stopNow({ reason: 'step', exit, cpu: cpuIndex, message: `stepped CPU ${cpuIndex} to ${hex(loc.linearRip)} (${loc.mode}, ${cpu.state})` });
  }

  /** Resumes until some CPU's mode (real / protected / long / compatibility) changes. */
  runToModeSwitch(): void {
    this.modeArm = this.currentModes();
    this.resume();
  }

  // ------------------------------------------------------------------ breakpoints
  addBreakpoint(spec: BreakpointSpec): BreakpointView {
    const bp: Breakpoint = { id: this.nextId++, spec, hits: 0, hooks: [] };
    this.breakpoints.set(bp.id, bp);
    if (spec.kind === 'linear') for (const cpu of this.cpus()) this.hook(bp, cpu, spec.address);
    if (spec.kind === 'physical') this.resolvePhysical(bp);
    return this.breakpointView(bp);
  }

  removeBreakpoint(id: number): boolean {
    const bp = this.breakpoints.get(id);
    if (!bp) return false;
    this.unhookAll(bp);
    this.breakpoints.delete(id);
    return true;
  }

  clearBreakpoints(): void {
    for (const id of [...this.breakpoints.keys()]) this.removeBreakpoint(id);
  }

  listBreakpoints(): BreakpointView[] {
    return [...this.breakpoints.values()].map((b) => this.breakpointView(b));
  }

  // ------------------------------------------------------------------ watches
  addWatch(spec: WatchSpec): WatchView {
    const w: Watch = { id: this.nextId++, address: spec.address, length: spec.length, hits: 0, last: readPhysical(this.machine.memory, spec.address, spec.length) };
    this.watches.set(w.id, w);
    if (!this.control.paused) this.updateStepWrapper();
    return { id: w.id, address: hex(w.address), length: w.length, hits: 0 };
  }

  removeWatch(id: number): boolean {
    const ok = this.watches.delete(id);
    this.updateStepWrapper();
    return ok;
  }

  clearWatches(): void {
    this.watches.clear();
    this.updateStepWrapper();
  }

  // ------------------------------------------------------------------ access watches
  /**
   * Stops right after the instruction that reads or writes [linear, +length)
   * on any of the debugged CPUs (Unicorn memory hooks on the linear range).
   * Exact, unlike addWatch (which compares physical bytes after each round):
   * RIP is the next instruction, as after a hardware data breakpoint.
   */
  addAccessWatch(spec: AccessWatchSpec): { id: number } {
    if (!Number.isInteger(spec.length) || spec.length < 1 || spec.length > 1 << 20) throw new RangeError(`access watch length ${spec.length}: expected 1 byte to 1 MiB`);
    const w: AccessWatch = { ...spec, id: this.nextId++, hits: 0, hooks: [] };
    const kinds = { read: spec.kind !== 'write', write: spec.kind !== 'read' };
    const cpus = this.cpus().filter((c) => !c.isClosed);
    for (const engine of this.engines()) {
      for (const piece of spec.pieces) {
        // Unicorn matches a hook on the access's first byte: start 7 bytes early so that an
        // 8-byte access that begins before the range is seen, and check the overlap in the hook.
        const begin = piece.hostPhysical >= 7n ? piece.hostPhysical - 7n : 0n;
        const end = piece.hostPhysical + BigInt(piece.length) - 1n;
        const handle = engine.onMemAccess(kinds, begin, end, (write, address, size) => {
          const cpu = cpus.find((c) => c.residentOn(engine));
          if (cpu) this.accessHit(w, piece, cpu, engine, write, address, size);
        });
        w.hooks.push({ engine, handle });
      }
      const exact = this.exactStops.get(engine);
      if (exact) exact.users++;
      else this.exactStops.set(engine, { handle: engine.stopAtEveryInstruction(), users: 1 });
      // Blocks translated and TLB entries filled before the hooks would skip them.
      engine.flushCode();
      engine.flushTlb();
    }
    this.accessWatches.set(w.id, w);
    return { id: w.id };
  }

  removeAccessWatch(id: number): boolean {
    const w = this.accessWatches.get(id);
    if (!w) return false;
    this.accessWatches.delete(id);
    const engines = new Set<X86Cpu['engine']>();
    for (const h of w.hooks) {
      if (h.engine.isClosed) continue;
      h.engine.removeHook(h.handle);
      engines.add(h.engine);
    }
    for (const engine of engines) {
      const exact = this.exactStops.get(engine);
      if (exact && --exact.users === 0) {
        engine.removeHook(exact.handle);
        this.exactStops.delete(engine);
      }
      engine.flushCode();
    }
    return true;
  }

  /** Runs inside Unicorn's memory hook, before the access: the CPU stops after this instruction. */
  private accessHit(w: AccessWatch, piece: AccessWatchSpec['pieces'][number], cpu: X86Cpu, engine: X86Cpu['engine'], write: boolean, hostPhysical: bigint, size: number): void {
    const end = piece.hostPhysical + BigInt(piece.length);
    if (hostPhysical + BigInt(size) <= piece.hostPhysical || hostPhysical >= end) return;
    w.hits++;
    const n = this.cpus().indexOf(cpu);
    const access = write ? 'write' : 'read';
    const linear = piece.linear + (hostPhysical - piece.hostPhysical);
    this.stopLater({ reason: 'access-watch', watch: w.id, access, address: hex64(BigInt.asUintN(64, linear)), size, cpu: n, message: `watch ${w.id}: CPU ${n} ${access}s ${size} byte(s) at ${hex(BigInt.asUintN(64, linear))}` });
    cpu.requestStop();
    // Not engine.stop(): that would end the run inside this instruction. The native code hook
    // stops before the next one.
    engine.armWatchStop();
  }

  /** Removes every hook and wrapper; the machine runs as if never debugged. */
  detach(): void {
    for (const id of [...this.accessWatches.keys()]) this.removeAccessWatch(id);
    this.clearBreakpoints();
    this.watches.clear();
    this.modeArm = null;
    this.updateStepWrapper();
    for (const d of this.detachers.splice(0)) d();
    this.listeners.clear();
  }

  // ------------------------------------------------------------------ internals
  private breakpointView(b: Breakpoint): BreakpointView {
    const v: BreakpointView = { id: b.id, kind: b.spec.kind, text: formatBreakpointSpec(b.spec), hits: b.hits };
    if (b.spec.kind === 'physical') v.resolved = b.hooks.map((h) => `cpu${this.cpus().indexOf(h.cpu)}:${hex(h.linear)}`);
    return v;
  }

  /** Every host engine a debugged CPU may run on: the scheduler moves vCPUs between them. */
  private engines(): X86Cpu['engine'][] {
    const set = new Set<X86Cpu['engine']>();
    for (const h of this.machine.hostCpus) if (!h.engine.isClosed) set.add(h.engine);
    for (const c of this.cpus()) if (!c.isClosed && !c.hostEngine.isClosed) set.add(c.hostEngine);
    return [...set];
  }

  private hook(bp: Breakpoint, cpu: X86Cpu, linear: bigint): void {
    const handles = this.engines().map((engine) => {
      const handle = engine.onCode(linear, linear, (addr) => this.codeHit(bp, cpu, engine, addr));
      dropTranslation(cpu, engine, linear);
      return { engine, handle };
    });
    bp.hooks.push({ cpu, linear, handles });
  }

  private unhookAll(bp: Breakpoint): void {
    for (const h of bp.hooks.splice(0)) {
      for (const { engine, handle } of h.handles) {
        if (engine.isClosed) continue;
        engine.removeHook(handle);
        if (!h.cpu.isClosed) dropTranslation(h.cpu, engine, h.linear);
      }
    }
  }

  /** Physical breakpoints hook every linear alias of their address in each CPU's current page tables. */
  private resolvePhysical(bp: Breakpoint): void {
    if (bp.spec.kind !== 'physical') return;
    const target = bp.spec.address;
    const wanted: { cpu: X86Cpu; linear: bigint }[] = [];
    for (const cpu of this.cpus()) {
      if (cpu.isClosed) continue;
      for (const linear of linearAliases(cpu.memory, cpu.readControl(), target, { limit: MAX_ALIASES })) wanted.push({ cpu, linear });
    }
    const same = wanted.length === bp.hooks.length && wanted.every((w, i) => bp.hooks[i]!.cpu === w.cpu && bp.hooks[i]!.linear === w.linear);
    if (same) return;
    this.unhookAll(bp);
    for (const w of wanted) this.hook(bp, w.cpu, w.linear);
  }

  private resolvePhysicalBreakpoints(): void {
    for (const bp of this.breakpoints.values()) this.resolvePhysical(bp);
  }

  /** Runs inside Unicorn's code hook: stop before the instruction at `addr`. */
  private codeHit(bp: Breakpoint, cpu: X86Cpu, engine: X86Cpu['engine'], addr: bigint): void {
    // Hooks live on every host engine, which run other contexts too (vCPUs of other VMs).
    if (!cpu.residentOn(engine)) return;
    if (this.skip.get(cpu) === addr) {
      this.skip.delete(cpu);
      return;
    }
    if (bp.spec.kind === 'physical') {
      // Re-check: the mapping may have changed since the alias was resolved.
      const w = cpu.translate(addr, 'fetch');
      if (!w.ok || w.paddr !== bp.spec.address) return;
    }
    bp.hits++;
    const n = this.cpus().indexOf(cpu);
    this.stopLater({ reason: 'breakpoint', breakpoint: bp.id, address: hex64(addr), cpu: n, message: `breakpoint ${bp.id} (${formatBreakpointSpec(bp.spec)}) hit on CPU ${n} at ${hex(addr)}` });
    cpu.requestStop();
    engine.stop();
  }

  /** Runs inside the POST port write (an OUT instruction): the CPU stops at the end of its block. */
  private postCodeWritten(code: number): void {
    for (const bp of this.breakpoints.values()) {
      if (bp.spec.kind !== 'post' || bp.spec.code !== code) continue;
      bp.hits++;
      const name = describePostCode(code).name;
      this.stopLater({ reason: 'post-code', breakpoint: bp.id, code: hex2(code), name, cpu: null, message: `breakpoint ${bp.id}: POST ${hex2(code)} ${name}` });
    }
  }

  private skipBreakpointAt(cpu: X86Cpu): void {
    if (this.breakpoints.size === 0 || cpu.isClosed) return;
    const rip = cpuLocation(cpu).linearRip;
    if ([...this.breakpoints.values()].some((b) => b.hooks.some((h) => h.cpu === cpu && h.linear === rip))) this.skip.set(cpu, rip);
  }

  /** Before resuming, CPUs sitting on a breakpoint execute that instruction once, so they do not stop again at once. */
  private stepOverBreakpoints(): void {
    if (this.breakpoints.size === 0) return;
    this.stepping = true;
    try {
      this.cpus().forEach((cpu) => {
        if (cpu.state !== 'running' || this.control.exit || cpu.isClosed) return;
        const rip = cpuLocation(cpu).linearRip;
        if (![...this.breakpoints.values()].some((b) => b.hooks.some((h) => h.cpu === cpu && h.linear === rip))) return;
        this.skip.set(cpu, rip);
        // Guest vCPUs are scheduled by the hypervisor: their first hit at this address is skipped instead.
        if (this.control.canStep(cpu) !== true) return;
        this.machine.stepInstruction(cpu);
        this.flushAfterRound.add(cpu);
        this.skip.delete(cpu);
      });
    } finally {
      this.stepping = false;
    }
  }

  /** A halted CPU in single-step: move virtual time to the next timer so its interrupt can wake it. */
  private waitForWake(cpu: X86Cpu): void {
    for (let tries = 0; tries < 1000 && cpu.state !== 'running'; tries++) {
      const deadline = this.machine.timeline.nextDeadline();
      if (!Number.isFinite(deadline)) return;
      this.machine.timeline.advanceTo(deadline);
      cpu.serviceInterrupts();
    }
  }

  private currentModes(): CpuMode[] {
    return this.cpus().map((c) => (c.isClosed ? 'real' : c.mode()));
  }

  private checkModes(before: CpuMode[]): void {
    const now = this.currentModes();
    const i = now.findIndex((m, k) => m !== before[k]);
    if (i < 0) return;
    this.modeArm = null;
    this.stopLater({ reason: 'mode-switch', from: before[i]!, to: now[i]!, cpu: i, message: `CPU ${i} switched from ${before[i]} to ${now[i]} mode` });
  }

  private checkWatches(): void {
    for (const w of this.watches.values()) {
      const now = readPhysical(this.machine.memory, w.address, w.length);
      const writes: WatchWrite[] = [];
      for (let i = 0; i < now.length; i++) {
        if (now[i] !== w.last[i] && writes.length < 64) writes.push({ address: hex(w.address + BigInt(i)), old: w.last[i] ?? null, new: now[i] ?? null });
      }
      if (writes.length === 0) continue;
      w.last = now;
      w.hits++;
      const first = writes[0]!;
      this.stopLater({ reason: 'watch', watch: w.id, writes, cpu: null, message: `watch ${w.id}: ${writes.length} byte(s) changed in [${hex(w.address)}, +${w.length}), first at ${first.address}` });
      return;
    }
  }

  /** After each scheduling round while armed: look for watch writes and mode switches. */
  private afterRound(modesBefore: CpuMode[] | null): void {
    for (const c of this.flushAfterRound) if (!c.isClosed) c.engine.flushCode();
    this.flushAfterRound.clear();
    this.checkWatches();
    if (modesBefore) this.checkModes(modesBefore);
    if (!this.modeArm && this.watches.size === 0) this.updateStepWrapper();
  }

  private updateStepWrapper(): void {
    const want = this.modeArm !== null || this.watches.size > 0 || this.flushAfterRound.size > 0;
    if (want !== this.stepWrapped) setRoundHook(this.machine, this.roundHook, want);
    this.stepWrapped = want;
  }

  /** Records a stop found while the CPU runs; it is reported once the engine is out of its callbacks. */
  private stopLater(detail: StopDetail): void {
    // The first stop of a round wins, except that an exit always gets reported.
    if (this.pending && detail.reason !== 'exit') return;
    this.pending = detail;
    if (detail.reason !== 'exit') this.control.pause();
    if (this.modeArm && detail.reason !== 'mode-switch') this.modeArm = null;
    if (this.stepping || this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => {
      this.flushScheduled = false;
      if (!this.stepping) this.flushStop();
    });
  }

  private flushStop(): StopInfo | null {
    const d = this.pending;
    if (!d) return null;
    this.pending = null;
    return this.stopNow(d);
  }

  private stopNow(detail: StopDetail): StopInfo {
    const stop = { ...detail, seq: ++this.seq, atMs: nsToMs(this.machine.now()) } as StopInfo;
    this.lastStop = stop;
    for (const l of this.listeners) l(stop);
    return stop;
  }
}
