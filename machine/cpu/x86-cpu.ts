/**
 * One logical x86 CPU: a Unicorn engine plus everything Unicorn leaves to us
 * (interrupt delivery, page walks, HLT/MWAIT sleep, CPUID, safe preemption).
 *
 * A single MODE_64 engine runs every mode: it starts from a real-mode context
 * taken from a MODE_16 engine, because a MODE_16 engine truncates restarts to
 * 16-bit IP and cannot resume protected-mode code above 64 KiB.
 */
import { nonCanonicalVector } from './x86/stack-segment.js';
import { UnicornEngine } from './unicorn/engine.js';
import { HostCpu, SLICE } from './host-cpu.js';
import { REG, UC_MEM_FETCH, UC_MEM_WRITE, UC_MODE_16, UC_MODE_64, UC_PROT_ALL, UC_PROT_EXEC, UC_PROT_READ, UC_PROT_WRITE, UcErr } from './unicorn/constants.js';
import { cpuid, type CpuidConfig } from './x86/cpuid.js';
import { walk, type PagingControl, type PhysicalReader, type WalkResult } from './x86/paging.js';
import { nmiBlocked, setNmiBlocked } from './x86/nmi.js';
import { deliver, interruptsInhibited, pendingExceptionInfo, performSyscall, softwareInterruptStart, TripleFault, VECTOR, vectorName, type DeliveryCpu, type EventToDeliver } from './x86/delivery.js';
import { contextLayout, HF, SEG, SEG_CACHE_SIZE } from './x86/context-layout.js';
import { cachedBytes } from './unicorn/probe-cache.js';
import { cpuMode, MSR, RFLAGS, type CpuMode } from './x86/registers.js';
import type { PhysicalMemory } from '../memory/physical-memory.js';
import { faultAddress } from './x86/fault-address.js';
import { armMsrIntercept, EXCP_VMEXIT, SVM_EXIT_MSR, svmLayout, withInterceptLifted } from './x86/msr-intercept.js';
import { InterruptInjector, nativeIrqLayout } from './x86/native-irq.js';
import { mwaitExtensionFault, privilegeFault, syscallFault } from './x86/privilege.js';
import { ioPermissionLayout, linearReader, PortIoGate, taskRegister } from './x86/io-permission.js';
import { armTscIntercept, decodeRdtsc, MSR_TSC_AUX, RDTSC_EXIT_NS, SVM_EXIT_RDTSC } from './x86/tsc.js';
import { armCr4WriteIntercept, armCr8Intercept, cr4AllowedBits, cr4WriteFault, decodeMovCr, SVM_EXIT_READ_CR8, SVM_EXIT_WRITE_CR4, SVM_EXIT_WRITE_CR8 } from './x86/control-registers.js';
import { armDebugRegisterIntercept, DebugRegisters, debugRegisterIntercept, decodeMovDr, isDebugRegisterExit, SVM_EXIT_WRITE_DR0 } from './x86/debug-registers.js';
import type { StateRecord } from '../state.js';
import { checkVersion, stateBoolean, stateBytes, stateNumber, stateRecord, stateString, StateError } from '../state.js';
import { applyPortable, capturePortable } from './x86/portable-state.js';

export type CpuRunState = 'running' | 'halted' | 'mwait' | 'wait-for-sipi' | 'shutdown';

export type SliceExit =
  | { kind: 'preempted' }
  | { kind: 'requested' }
  | { kind: 'halted' }
  | { kind: 'mwait' }
  | { kind: 'exception'; vector: number }
  | { kind: 'hypercall' }
  | { kind: 'ept-violation'; gpa: bigint; gva: bigint; access: 'read' | 'write' | 'fetch' }
  | { kind: 'triple-fault'; reason: string }
  | { kind: 'error'; message: string };

/** Per-CPU memory-mapped devices (the local APIC). */
export interface LocalMmio {
  base: number;
  size: number;
  read(cpu: X86Cpu, offset: number, size: number): bigint;
  write(cpu: X86Cpu, offset: number, size: number, value: bigint): void;
}

/** The physical address space a CPU's page walks and event delivery see. */
export interface CpuMemory extends PhysicalReader {
  readU8(paddr: number): number;
  readBytes(paddr: number, length: number): Uint8Array;
  /** A store by the CPU itself (not DMA): no code-invalidation listeners. */
  writeBytes(paddr: number, data: Uint8Array): void;
}

/** One level of a second-level (EPT) walk, for inspection. */
export interface SecondLevelStep {
  level: string;
  index: number;
  entryAddr: number;
  entry: bigint;
  /** "R W X PS A D MT=6" style. */
  flags: string;
}

/** The EPT step for guests: guest-physical to host-physical, or null on an EPT violation. */
export interface SecondLevelTranslation {
  /** The EPT pointer of these tables when they are in host RAM in Intel's format (the native TLB fill walks them). */
  eptp?(): bigint;
  translate(gpa: bigint, access: 'read' | 'write' | 'fetch'): { hpa: bigint; writable: boolean; executable: boolean; dirty: boolean } | null;
  /** Side-effect-free walk with every level, for the inspection views. */
  inspect(gpa: bigint, access: 'read' | 'write' | 'fetch'): { steps: SecondLevelStep[]; hpa: bigint | null; fault?: string };
}

export interface CpuHost {
  /** Machine memory: host RAM/ROM regions mapped into the engine. */
  readonly memory: PhysicalMemory;
  /** What page walks and delivery read (guest-physical for a VM); defaults to `memory`. */
  readonly walkMemory?: CpuMemory;
  /** Second-level translation (EPT) for guests; absent on bare metal. */
  readonly secondLevel?: SecondLevelTranslation;
  ioRead(cpu: X86Cpu, port: number, size: 1 | 2 | 4): number;
  ioWrite(cpu: X86Cpu, port: number, size: 1 | 2 | 4, value: number): void;
  /** An interrupt is waiting for this CPU (LAPIC or PIC through LINT0). */
  interruptPending(cpu: X86Cpu): boolean;
  /** INTA: returns the vector, or null if it went away (spurious). */
  acknowledgeInterrupt(cpu: X86Cpu): number | null;
  readonly localMmio: readonly LocalMmio[];
  /** Pages whose write access must be observed (MWAIT monitors, dirty logging). */
  isWatchedPage(pagePaddr: number): boolean;
  /** Whether any page is watched now (absent: the native TLB fill assumes some are). */
  hasWatchedPages?(): boolean;
  /** A CPU got write access to a watched page. */
  onWatchedWrite(cpu: X86Cpu, pagePaddr: number): void;
  /** VMCALL/VMMCALL: returns true if handled (RIP is advanced by the CPU). */
  hypercall?(cpu: X86Cpu): boolean;
  /** RDMSR/WRMSR exits (hypervisor VMs). Without it MSRs execute inside the CPU model. */
  readonly msrExits?: MsrExitHandler;
  /** CR8 of a vCPU: its LAPIC's TPR[7:4]. With it (and MSR exits), MOV to/from CR8 exits to this. */
  readonly cr8?: { read(cpu: X86Cpu): number; write(cpu: X86Cpu, value: number): void };
  /** A code fetch filled the TLB for this guest-physical page (behaviour profiles: code pages executed). */
  onCodeFetch?(cpu: X86Cpu, guestPage: number): void;
}

/** Thrown by an MSR exit handler: the instruction raises #GP(0). */
export class MsrFault extends Error {
  override name = 'MsrFault';
}

export interface MsrExitHandler {
  /** Host-physical address of this CPU's VMCB-format control area (it points at the MSR permission map). */
  controlArea(cpu: X86Cpu): number;
  /** RDMSR: the value, or undefined to take the CPU model's. */
  read(cpu: X86Cpu, index: number): bigint | undefined;
  /** WRMSR: true if handled, false to let the CPU model take it. */
  write(cpu: X86Cpu, index: number, value: bigint): boolean;
  /** RDTSC/RDTSCP: the vCPU's TSC now (x86/tsc.ts). Absent: they run in the CPU model, on host time. */
  readTsc?(cpu: X86Cpu): bigint;
}

export interface CpuEvent {
  kind: 'interrupt' | 'exception' | 'syscall' | 'hlt' | 'mwait' | 'wake' | 'triple-fault' | 'cpuid' | 'msr';
  vector?: number;
  detail?: string;
  rip: bigint;
}

/** Counter names of external interrupts by vector, built once (counted on every tick of an idle guest). */
const IRQ_COUNTER_KEYS: string[] = [];

/** General registers by their instruction-encoding number. */
const GPR = [REG.RAX, REG.RCX, REG.RDX, REG.RBX, REG.RSP, REG.RBP, REG.RSI, REG.RDI, REG.R8, REG.R9, REG.R10, REG.R11, REG.R12, REG.R13, REG.R14, REG.R15] as const;

/** EDX after reset holds the CPUID signature (leaf 1 EAX). */
const RESET_SIGNATURE = 0x00060fb1;

/** Power-on context, made once per process from a MODE_16 engine (see the file comment). */
let resetContext: Uint8Array | undefined;

export class X86Cpu implements DeliveryCpu {
  /** The host CPU this context runs on next (host-cpu.ts); the scheduler may move it between slices. */
  private hostCpu: HostCpu;
  /** A host CPU this context made for itself (CPU-layer tests); closed with it. */
  private readonly ownHostCpu: HostCpu | null;
  /** The context while it is not loaded in an engine. */
  private readonly parked: Uint8Array;
  private parkedUnits = 0n;
  state: CpuRunState;
  readonly counters: Record<string, number> = {};
  /** Observers for the inspection API and event log. */
  onEvent: ((ev: CpuEvent) => void) | undefined;
  private stopRequested = false;
  private nmiPending = false;
  private pendingTlbFault: { page: bigint; access: number; errorCode: number; nonCanonical?: true } | null = null;
  private pendingEptViolation: { gpa: bigint; gva: bigint; access: 'read' | 'write' | 'fetch' } | null = null;
  private pendingIntr: number | null = null;
  private pendingSyscall = false;
  private hostError: Error | null = null;
  /** Native delivery of external interrupts (x86/native-irq.ts); null: delivery.ts does it. */
  private injector: InterruptInjector | null = null;
  /** RDMSR/WRMSR through the API on an intercepting context (UnicornEngine.msrGuard). */
  private msrGuard: UnicornEngine['msrGuard'] = undefined;
  /** A triple fault while delivering an interrupt between runs. */
  private deferredTripleFault: string | null = null;
  private readonly paging = new BigUint64Array(5);
  /** The MONITORed line: `paddr` host-physical (what writes are compared with), `gpa` as the guest named it (what a snapshot keeps). */
  monitor: { paddr: number; gpa: number; armed: boolean; triggered: boolean } | null = null;
  private mwaitBreakOnMaskedIrq = false;
  /** A vCPU's DR0-DR7 (x86/debug-registers.ts): MOV DR exits to us, the engine never sees them. */
  readonly debugRegisters = new DebugRegisters();
  private breakpointHooks: bigint[] = [];
  /** The DR breakpoints changed while the context was parked: hook them before the next run. */
  private breakpointsStale = false;
  /** DR6.Bn mask of instruction breakpoints hit by the last run. */
  private breakpointHit = 0;
  /** CR4 bits our CPUID lets a guest set (control-registers.ts), computed on first use. */
  private cr4Allowed: bigint | undefined;
  private readonly linearRead = linearReader((lin) => this.translate(lin, 'read'), (paddr) => this.memoryView.readU8(paddr));

  constructor(
    readonly index: number,
    readonly apicId: number,
    private readonly host: CpuHost,
    private readonly cpuidConfig: CpuidConfig,
    hostCpu?: HostCpu,
  ) {
    resetContext ??= cachedBytes('resetContext', contextLayout().size, makeResetContext);
    this.parked = resetContext.slice();
    this.ownHostCpu = hostCpu ? null : new HostCpu(index, host.memory, host.localMmio);
    this.hostCpu = hostCpu ?? this.ownHostCpu!;
    this.state = index === 0 ? 'running' : 'wait-for-sipi';
    this.reset();
  }

  /**
   * The engine with this context loaded. Binding is lazy: touching the engine
   * of a parked context loads it into its host CPU (parking the one there).
   */
  get engine(): UnicornEngine {
    const h = this.hostCpu;
    if (h.resident !== this && !h.engine.isClosed) {
      if (h.running) throw new Error(`CPU ${this.index}: its host CPU ${h.index} is running another context (a hook touched a parked CPU's engine)`);
      h.bind(this);
    }
    return h.engine;
  }

  /** The machine has shut down (its engines are closed): nothing of this context may be touched. Never binds. */
  get isClosed(): boolean {
    return this.hostCpu.engine.isClosed;
  }

  /** Run on another host CPU from the next slice on. */
  placeOn(hostCpu: HostCpu): void {
    if (hostCpu === this.hostCpu) return;
    this.hostCpu.unbind(this);
    this.hostCpu = hostCpu;
  }

  /** Loaded in an engine right now (hooks on that engine fire for this context). */
  get isResident(): boolean {
    return this.hostCpu.resident === this;
  }

  /** The engine of the host CPU this context runs on next, without binding it (debugger hooks). */
  get hostEngine(): UnicornEngine {
    return this.hostCpu.engine;
  }

  /** Bound on `engine` now: a hook on a shared host engine fires for whichever context runs there. */
  residentOn(engine: UnicornEngine): boolean {
    return this.hostCpu.engine === engine && this.hostCpu.resident === this;
  }

  /** Called by HostCpu.bind: load this context into its engine. */
  load(h: HostCpu): void {
    h.engine.restoreContext(this.parked);
    h.slice64[SLICE.units / 8] = this.parkedUnits;
    h.engine.msrGuard = this.msrGuard;
    this.injector?.rearm();
  }

  /**
   * Called by HostCpu before another context takes the engine. An interrupt
   * handed to QEMU but not yet delivered is delivered into the context first:
   * the request bit lives in the engine, not in the context.
   */
  park(): void {
    const faulted = this.injector?.afterRun() ?? null;
    if (faulted !== null) this.deliverExternal(faulted);
    this.injector?.park();
    const h = this.hostCpu;
    this.parked.set(h.engine.contextView());
    this.parkedUnits = h.slice64[SLICE.units / 8]!;
    h.engine.msrGuard = undefined;
  }

  /** Processor reset (power-on or INIT): real mode at the reset vector. */
  reset(): void {
    this.injector?.drop();
    this.deferredTripleFault = null;
    this.monitor = null;
    this.pendingTlbFault = null;
    if (!this.isResident) {
      // INIT from another CPU's ICR write arrives while that CPU runs on the engine:
      // a parked context is reset in place (CR0 = CD|NW|ET touches no hflags).
      this.parked.set(resetContext!);
      new DataView(this.parked.buffer).setBigUint64(contextLayout().cr, 0x60000010n, true);
      this.armMsrExits(this.parked);
      return;
    }
    this.engine.restoreContext(resetContext!);
    this.engine.writeReg(REG.CR0, 0x60000010n);
    this.armMsrExits();
    this.engine.flushTlb();
    this.debugRegisters.reset();
    this.breakpointsStale = true;
  }

  /** Whether RDMSR/WRMSR exit to the host, and if not, why. */
  get msrExits(): true | string {
    if (!this.host.msrExits) return 'no MSR exit handler (bare metal)';
    const layout = svmLayout();
    return typeof layout === 'string' ? layout : true;
  }

  /** Every context this CPU loads (reset, snapshot restore) gets the MSR intercepts of its current host. */
  private armMsrExits(parked?: Uint8Array): void {
    const handler = this.host.msrExits;
    const layout = svmLayout();
    if (!handler || typeof layout === 'string') return;
    const area = handler.controlArea(this);
    if (parked) {
      armMsrIntercept(parked, layout, area);
      if (handler.readTsc) armTscIntercept(parked, layout);
      armCr4WriteIntercept(parked, layout);
      if (this.host.cr8) armCr8Intercept(parked, layout);
      if (debugRegisterIntercept() === true) armDebugRegisterIntercept(parked, layout);
    } else {
      const blob = this.engine.saveContext();
      armMsrIntercept(blob, layout, area);
      if (handler.readTsc) armTscIntercept(blob, layout);
      armCr4WriteIntercept(blob, layout);
      if (this.host.cr8) armCr8Intercept(blob, layout);
      if (debugRegisterIntercept() === true) armDebugRegisterIntercept(blob, layout);
      this.engine.restoreContext(blob);
    }
    this.msrGuard = (index, write, access) => withInterceptLifted(this.host.memory, area, index, write, access);
    if (!parked) this.engine.msrGuard = this.msrGuard;
    const irq = nativeIrqLayout();
    this.injector = typeof irq === 'string' ? null : new InterruptInjector(this, irq, this.host.memory, area);
  }

  /** Whether port I/O is checked against IOPL and the TSS I/O bitmap, and if not, why. */
  get ioPermission(): true | string {
    const io = ioPermissionLayout();
    return typeof io === 'string' ? io : true;
  }

  /** Whether QEMU delivers this CPU's external interrupts, and if not, why (they then go through delivery.ts). */
  get nativeInterrupts(): true | string {
    if (this.injector) return true;
    const irq = nativeIrqLayout();
    return typeof irq === 'string' ? irq : 'needs MSR exits (hypervisor vCPUs only)';
  }

  /** INIT-SIPI-SIPI: start at vector * 0x1000 in real mode. */
  startupAt(vector: number): void {
    this.reset();
    const resident = this.isResident;
    const blob = resident ? this.engine.saveContext() : this.parked;
    const L = contextLayout();
    const dv = new DataView(blob.buffer, blob.byteOffset);
    const o = L.segs + SEG.CS * SEG_CACHE_SIZE;
    dv.setUint32(o, (vector << 8) & 0xffff, true);
    dv.setBigUint64(o + 8, BigInt(vector << 12), true);
    dv.setBigUint64(L.regs + 16 * 8, 0n, true);
    if (resident) this.engine.restoreContext(blob);
    this.state = 'running';
  }

  /**
   * The Multiboot entry state (what QEMU's -kernel loader leaves): 32-bit
   * protected mode, flat CS 0x10 / data 0x18, paging and interrupts off.
   */
  enterFlatProtectedMode(entry: number, eax: number, ebx: number): void {
    this.reset();
    this.engine.writeReg(REG.CR0, 0x60000011n);
    const blob = this.engine.saveContext();
    const L = contextLayout();
    const dv = new DataView(blob.buffer);
    const put = (seg: number, sel: number, flags: number): void => {
      const o = L.segs + seg * SEG_CACHE_SIZE;
      dv.setUint32(o, sel, true);
      dv.setBigUint64(o + 8, 0n, true);
      dv.setUint32(o + 16, 0xffffffff, true);
      dv.setUint32(o + 20, flags, true);
    };
    const code32 = 0x00cf9b00;
    const data32 = 0x00cf9300;
    put(SEG.CS, 0x10, code32);
    for (const s of [SEG.DS, SEG.ES, SEG.SS, SEG.FS, SEG.GS]) put(s, 0x18, data32);
    // hflags: CPL 0, PE, CS32, SS32 (ADDSEG off: all bases are zero).
    const hflags = dv.getUint32(L.hflags, true);
    dv.setUint32(L.hflags, (hflags & ~0x3 & ~(1 << 6)) | (1 << 7) | (1 << 4) | (1 << 5), true);
    this.engine.restoreContext(blob);
    this.engine.writeReg(REG.RAX, eax >>> 0);
    this.engine.writeReg(REG.RBX, ebx >>> 0);
    this.engine.writeReg(REG.RIP, BigInt(entry >>> 0));
    this.engine.writeReg(REG.RFLAGS, 2n);
    this.engine.flushTlb();
    this.state = 'running';
  }

  /** Exceptions thrown in hooks do not stop the guest; catch them, stop, and report. */
  private guarded<T>(fn: () => T, fallback: T): T {
    try {
      return fn();
    } catch (e) {
      this.hostError ??= e as Error;
      this.requestStop();
      return fallback;
    }
  }

  // --- Engine hooks, dispatched by the host CPU to the context bound to it.
  // Port I/O passes the IOPL / I/O-bitmap gate of the host CPU first (x86/io-permission.ts); unchecked only if this build defeats it.
  private permits(port: number, size: 1 | 2 | 4): boolean {
    const gate = this.hostCpu.ioGate;
    return !gate || gate.permits(port, size, () => taskRegister(this.hostCpu.engine.contextView()), this.linearRead);
  }

  hookIn(port: number, size: 1 | 2 | 4): number {
    return this.guarded(() => (this.permits(port, size) ? this.host.ioRead(this, port, size) : 0xffffffff), 0xffffffff);
  }

  hookOut(port: number, size: 1 | 2 | 4, value: number): void {
    this.guarded(() => (this.permits(port, size) ? this.host.ioWrite(this, port, size, value) : undefined), undefined);
  }

  hookInterrupt(intno: number): void {
    this.pendingIntr = intno;
    this.injector?.noteException();
    this.hostCpu.engine.stop();
  }

  hookCpuid(): boolean {
    return this.guarded(() => this.emulateCpuid(), true);
  }

  hookSyscall(): boolean {
    this.pendingSyscall = true;
    this.hostCpu.engine.stop();
    return true;
  }

  /** Guest page walks done for the engine's TLB misses (migration reports them after resume). */
  tlbFillWalks = 0;

  hookTlbFill(vaddr: bigint, type: number): { paddr: bigint; perms: number } | null {
    this.tlbFillWalks++;
    const r = this.guarded(() => this.tlbFill(vaddr, type), null);
    // A refused fill while QEMU is delivering our virtual interrupt (IDT, stack or handler page
    // not mapped yet, e.g. a lazily restored VM) would be retried inside uc_emu_start forever:
    // withdraw it, and delivery.ts delivers it after the run, when EPT violations can be resolved.
    if (r === null) this.injector?.noteException();
    return r;
  }

  /** A per-CPU MMIO window (LAPIC) of the host CPU: routed to this context's host devices. */
  localMmioRead(base: number, offset: number, size: number): bigint {
    const d = this.localDevice(base);
    return d ? this.guarded(() => d.read(this, offset, size), 0n) : (1n << BigInt(size * 8)) - 1n;
  }

  localMmioWrite(base: number, offset: number, size: number, value: bigint): void {
    const d = this.localDevice(base);
    if (d) this.guarded(() => d.write(this, offset, size, value), undefined);
  }

  private localDevice(base: number): LocalMmio | undefined {
    for (const d of this.host.localMmio) if (d.base === base) return d;
    return undefined;
  }

  private emulateCpuid(): boolean {
    const leaf = this.engine.readReg32(REG.EAX);
    const sub = this.engine.readReg32(REG.ECX);
    const r = cpuid(leaf, sub, this.cpuidConfig);
    this.engine.writeReg(REG.RAX, r.eax >>> 0);
    this.engine.writeReg(REG.RBX, r.ebx >>> 0);
    this.engine.writeReg(REG.RCX, r.ecx >>> 0);
    this.engine.writeReg(REG.RDX, r.edx >>> 0);
    this.count('cpuid');
    return true;
  }

  readControl(): PagingControl {
    this.engine.pagingState(this.paging);
    return { cr0: this.paging[0]!, cr3: this.paging[1]!, cr4: this.paging[2]!, efer: this.paging[3]! };
  }

  /** CPL from QEMU's hflags (exact in virtual-8086 mode, where CS.RPL is not the CPL). */
  cpl(): number {
    const blob = this.engine.contextView();
    return new DataView(blob.buffer, blob.byteOffset).getUint32(contextLayout().hflags, true) & HF.CPL_MASK;
  }

  /** CPL as the walker needs it: 0 in real mode, else CS.RPL. */
  private currentCpl(): number {
    return (this.paging[0]! & 1n) === 0n ? 0 : Number(this.paging[4]! & 3n);
  }

  private tlbFill(vaddr: bigint, type: number): { paddr: bigint; perms: number } | null {
    const ctl = this.readControl();
    const access = type === UC_MEM_WRITE ? 'write' : type === UC_MEM_FETCH ? 'fetch' : 'read';
    const user = this.currentCpl() === 3;
    let r: WalkResult;
    try {
      r = walk(this.memoryView, ctl, vaddr, { access, user, setAccessedDirty: true, recordSteps: false });
    } catch (e) {
      // A guest page-table access that the EPT refuses.
      const gpa = (e as { gpa?: bigint }).gpa;
      if (gpa === undefined) throw e;
      this.pendingEptViolation = { gpa, gva: vaddr, access: 'read' };
      return null;
    }
    if (!r.ok) {
      this.pendingTlbFault = { page: vaddr, access: type, errorCode: r.errorCode, ...(r.nonCanonical ? { nonCanonical: true } : {}) };
      return null;
    }
    const guestPaddr = r.paddr;
    if (this.host.secondLevel) {
      const t = this.host.secondLevel.translate(r.paddr & ~0xfffn, access);
      if (!t) {
        this.pendingEptViolation = { gpa: r.paddr, gva: vaddr, access };
        return null;
      }
      // Write access on a read fill only when both the guest PTE and the EPT leaf are dirty already.
      r = { ...r, paddr: t.hpa, writable: r.writable && t.writable, executable: r.executable && t.executable, dirty: r.dirty && t.dirty };
    }
    const page = Number(r.paddr & ~0xfffn);
    // Execute permission only on fetch fills, so every page holding translated code is known.
    let perms = UC_PROT_READ;
    if (access === 'fetch' && r.executable) {
      perms |= UC_PROT_EXEC;
      this.hostCpu.noteCodePage(page);
      this.host.onCodeFetch?.(this, Number(guestPaddr & ~0xfffn));
    }
    // Grant write only on a write (so the D bit and watchers see the first store)
    // or when the page is already dirty, nobody watches it and it holds no translated code
    // (stores into code must come here: host-cpu.ts noteCodeWrite).
    if (r.writable) {
      const watched = this.host.isWatchedPage(page);
      const code = this.hostCpu.isCodePage(page);
      if (access === 'write') {
        perms |= UC_PROT_WRITE;
        if (watched) this.host.onWatchedWrite(this, page);
        if (code) this.hostCpu.noteCodeWrite();
      } else if (r.dirty && !watched && !code) {
        perms |= UC_PROT_WRITE;
      }
    }
    return { paddr: r.paddr, perms };
  }

  /**
   * Drops the translated code of the page mapped at `vaddr` (TB_REMOVE_CACHE, by the current
   * page tables) and stops counting its host page as code: later guest stores to it then need
   * no flush of all translated code (noteCodeWrite). False if `vaddr` maps no page.
   */
  dropCodePage(vaddr: number): boolean {
    const r = this.translate(BigInt(vaddr), 'fetch');
    const hpa = r.ok ? this.hostPhysical(Number(r.paddr & ~0xfffn)) : -1;
    if (hpa < 0) return false;
    this.engine.invalidateCode(vaddr, vaddr + 4096);
    this.hostCpu.codeDropped(hpa);
    return true;
  }

  /** Where a (guest-)physical address lives in the machine: through the EPT for a vCPU (-1 if unmapped). */
  private hostPhysical(paddr: number): number {
    const sl = this.host.secondLevel;
    if (!sl) return paddr;
    const t = sl.inspect(BigInt(paddr), 'read');
    return t.hpa === null ? -1 : Number(t.hpa);
  }

  /** Inspection and `translate`: a side-effect-free walk with the CPU's current control registers. */
  translate(vaddr: bigint, access: 'read' | 'write' | 'fetch' = 'read', user = false): WalkResult {
    return walk(this.memoryView, this.readControl(), vaddr, { access, user, setAccessedDirty: false });
  }

  /** The EPT part of an inspection walk (null on bare metal). */
  inspectSecondLevel(gpa: bigint, access: 'read' | 'write' | 'fetch' = 'read'): ReturnType<SecondLevelTranslation['inspect']> | null {
    return this.host.secondLevel?.inspect(gpa, access) ?? null;
  }

  /** The address space seen by walks and delivery: guest-physical for a VM's vCPU. */
  get memory(): CpuMemory {
    return this.memoryView;
  }

  private get memoryView(): CpuMemory {
    return this.host.walkMemory ?? this.host.memory;
  }

  readRip(): bigint {
    // A parked context answers from its bytes: looking must not move contexts between engines.
    if (!this.isResident) return new DataView(this.parked.buffer).getBigUint64(contextLayout().regs + 16 * 8, true);
    return this.engine.readReg(REG.RIP);
  }

  /** EFLAGS.IF (kept in env->eflags itself, not in QEMU's lazy condition codes). */
  private interruptFlag(): boolean {
    if (!this.isResident) return (new DataView(this.parked.buffer).getUint32(contextLayout().regs + 17 * 8, true) & RFLAGS.IF) !== 0;
    return (this.readRflags() & RFLAGS.IF) !== 0;
  }

  readRsp(): bigint {
    return this.engine.readReg(REG.RSP);
  }

  readRflags(): number {
    return Number(this.engine.readReg(REG.RFLAGS) & 0xffff_ffffn);
  }

  /** For delivery: the engine's context buffer, patched and handed back through commit(). */
  saveContext(): Uint8Array {
    return this.engine.contextView();
  }

  commit(blob: Uint8Array, rip: bigint, rsp: bigint, rflags: number): void {
    const L = contextLayout();
    const dv = new DataView(blob.buffer, blob.byteOffset);
    dv.setBigUint64(L.regs + 4 * 8, rsp, true);
    dv.setBigUint64(L.regs + 16 * 8, rip, true);
    // Unicorn never clears exception_is_int: left set after an INT n, the next
    // exception or MSR exit would resume at that INT's return address.
    dv.setInt32(L.exceptionIsInt, 0, true);
    this.engine.restoreContext(blob);
    this.engine.writeReg(REG.RFLAGS, BigInt(rflags >>> 0));
  }

  mode(): CpuMode {
    const ctl = this.readControl();
    const blob = this.engine.saveContext();
    const L = contextLayout();
    const csFlags = new DataView(blob.buffer).getUint32(L.segs + SEG.CS * SEG_CACHE_SIZE + 20, true);
    return cpuMode(ctl.cr0, ctl.efer, csFlags);
  }

  /** Virtual-time units executed so far (code bytes of entered blocks). */
  get units(): bigint {
    return this.isResident ? this.hostCpu.slice64[SLICE.units / 8]! : this.parkedUnits;
  }

  set units(v: bigint) {
    if (this.isResident) this.hostCpu.slice64[SLICE.units / 8] = v;
    else this.parkedUnits = v;
  }

  /**
   * Ask the running engine to stop at the next block boundary. Never uc_emu_stop
   * from an MMIO callback: Unicorn then restarts the access, so the store runs twice.
   */
  requestStop(): void {
    this.stopRequested = true;
    if (!this.isResident) return;
    // The block hook's common path compares units with limit only (fmcpu.c): a zero limit makes it look at request.
    this.hostCpu.slice32[SLICE.request / 4] = 1;
    this.hostCpu.slice64[SLICE.limit / 8] = 0n;
  }

  /** An NMI (LAPIC LINT1 or NMI IPI): latched until delivered, which waits for the previous NMI handler's IRET. */
  raiseNmi(): void {
    this.nmiPending = true;
    this.requestStop();
  }

  /** Delivers a latched NMI through IDT vector 2 unless an NMI handler is still running (x86/nmi.ts). */
  private serviceNmi(): boolean {
    if (nmiBlocked(this.engine.contextView())) return false;
    this.nmiPending = false;
    if (this.state !== 'running') this.wake('NMI');
    this.deliverExternal(VECTOR.NMI);
    const blob = this.engine.contextView();
    setNmiBlocked(blob);
    this.engine.restoreContext(blob);
    this.count('nmi');
    return true;
  }

  /** Wake from HLT/MWAIT when an interrupt is pending, then deliver it if IF allows. */
  serviceInterrupts(): void {
    const injector = this.injector;
    if (this.state === 'wait-for-sipi' || this.state === 'shutdown') return;
    if (this.nmiPending && this.serviceNmi()) return;
    if (injector?.pending) {
      // Held by QEMU until the window opens; a CPU that went to sleep with the window open wakes to take it.
      if (this.state !== 'running' && injector.window() === 1) this.wake(`interrupt 0x${injector.pendingVector!.toString(16)}`);
      return;
    }
    if (!this.host.interruptPending(this)) return;
    if (injector) {
      // Handed over only with the window open (IF=1, no shadow): QEMU then delivers it before the next instruction.
      // Known gap (docs/hypervisor.md): a vCPU whose every exit falls inside IRQs-off code never
      // sees an open window at a slice boundary, so a pending interrupt can wait indefinitely.
      const open = injector.window() === 1;
      if (!open) {
        if (this.state === 'mwait' && this.mwaitBreakOnMaskedIrq) this.wake('masked interrupt');
        return;
      }
      const vector = this.host.acknowledgeInterrupt(this);
      if (vector === null) return;
      if (this.state !== 'running') this.wake(`interrupt 0x${vector.toString(16)}`);
      injector.inject(vector);
      this.count((IRQ_COUNTER_KEYS[vector] ??= `irq:0x${vector.toString(16)}`));
      return;
    }
    // delivery.ts, between runs: only with IF=1 and no interrupt shadow.
    if (!this.interruptFlag()) {
      if (this.state === 'mwait' && this.mwaitBreakOnMaskedIrq) this.wake('masked interrupt');
      return;
    }
    const blob = this.engine.contextView();
    if (interruptsInhibited(blob)) return;
    const vector = this.host.acknowledgeInterrupt(this);
    if (vector === null) return;
    if (this.state !== 'running') this.wake(`interrupt 0x${vector.toString(16)}`);
    this.deliverExternal(vector, blob);
    this.count((IRQ_COUNTER_KEYS[vector] ??= `irq:0x${vector.toString(16)}`));
  }

  /** An interrupt is waiting for this CPU (from its LAPIC or the PIC). */
  hasPendingInterrupt(): boolean {
    return this.nmiPending || this.host.interruptPending(this);
  }

  /** Could an interrupt ever wake this CPU? (HLT with IF=0 only wakes on NMI/INIT/SMI.) */
  canBeWokenByInterrupt(): boolean {
    if (this.state === 'running') return true;
    if (this.state !== 'halted' && this.state !== 'mwait') return false;
    if (this.nmiPending) return true;
    return this.interruptFlag() || (this.state === 'mwait' && this.mwaitBreakOnMaskedIrq);
  }

  wake(why: string): void {
    if (this.state === 'halted' || this.state === 'mwait') {
      this.onEvent?.({ kind: 'wake', detail: why, rip: this.readRip() });
      this.state = 'running';
      this.monitor = null;
    }
  }

  /**
   * Runs until the budget (in units) is used, or something needs the machine's
   * attention. `count` limits instructions (1 = single-step, for debuggers: slow).
   */
  runSlice(budget: bigint, count = 0): SliceExit {
    const deferred = this.takeDeferredTripleFault();
    if (deferred) return deferred;
    if (this.state !== 'running') return { kind: this.state === 'mwait' ? 'mwait' : 'halted' };
    const engine = this.engine;
    const h = this.hostCpu;
    h.running = true;
    h.flushCodeIfPending();
    h.nativeTlb.prepare(this.host);
    h.slice64[SLICE.limit / 8] = h.slice64[SLICE.units / 8]! + budget;
    h.slice32[SLICE.stopped / 4] = 0;
    h.slice32[SLICE.request / 4] = 0;
    this.stopRequested = false;
    this.pendingTlbFault = null;
    this.pendingEptViolation = null;
    this.pendingIntr = null;
    this.pendingSyscall = false;
    this.breakpointHit = 0;
    if (this.breakpointsStale) this.syncBreakpoints();
    let rc: number;
    try {
      rc = engine.start(this.readRip(), count);
    } finally {
      h.running = false;
    }
    if (h.slice32[SLICE.stopped / 4] !== 0 && engine.hasCodeHooks) this.rewindTo(h.slice64[SLICE.stopPc / 8]!);
    // A data watchpoint stopped the run between two instructions of a block.
    const watchStop = engine.takeWatchStop();
    if (watchStop !== null) this.rewindTo(watchStop);
    if (this.hostError) {
      const err = this.hostError;
      this.hostError = null;
      return { kind: 'error', message: `${err.message} (at RIP 0x${this.readRip().toString(16)})` };
    }
    h.flushCodeIfPending();
    h.nativeTlb.growIfThrashing(engine);
    const undelivered = this.injector?.afterRun() ?? null;
    try {
      if (undelivered !== null) {
        // QEMU faulted on the way in (a bad gate, IDT or stack page): drop what it raised and
        // deliver through our code, which applies the SDM's rules for faults during delivery.
        this.pendingTlbFault = null;
        this.pendingEptViolation = null;
        this.pendingIntr = null;
        this.deliverExternal(undelivered);
        return this.takeDeferredTripleFault() ?? { kind: 'requested' };
      }
      return this.classify(rc, count);
    } catch (e) {
      if (e instanceof TripleFault) return this.tripleFault(e.message);
      return { kind: 'error', message: `CPU ${this.index}: ${(e as Error).message} (at RIP 0x${this.readRip().toString(16)})` };
    }
  }

  /**
   * A debugger's code hook is installed: Unicorn then leaves RIP stale (wherever it was
   * last written back, e.g. a function's entry inside chained blocks) when a hook stops
   * it. Put RIP on `pc` (linear): the block our block hook stopped before, or the
   * instruction after a watched access.
   */
  private rewindTo(pc: bigint): void {
    const blob = this.engine.contextView();
    const csBase = new DataView(blob.buffer, blob.byteOffset, blob.byteLength).getBigUint64(contextLayout().segs + SEG.CS * SEG_CACHE_SIZE + 8, true);
    this.engine.writeReg(REG.RIP, BigInt.asUintN(64, pc - csBase));
  }

  private classify(rc: number, count: number): SliceExit {
    const unraised = this.hostCpu.ioGate?.takeUnraised();
    if (unraised) return { kind: 'error', message: `CPU ${this.index}: refused port I/O could not be raised as a fault (${unraised.reason}) at RIP 0x${this.readRip().toString(16)}` };
    if (rc === UcErr.EXCEPTION && this.pendingEptViolation) {
      const v = this.pendingEptViolation;
      this.count('ept-violation');
      return { kind: 'ept-violation', gpa: v.gpa, gva: v.gva, access: v.access };
    }
    if (rc === UcErr.EXCEPTION && this.pendingTlbFault?.nonCanonical) {
      // #SS(0) when the access went through SS, else #GP(0) (machine/cpu/x86/stack-segment.ts).
      const vector = nonCanonicalVector(this.fetchBytes(this.readRip(), 15), { rsp: this.engine.readReg(REG.RSP), rbp: this.engine.readReg(REG.RBP) });
      return this.raise(vector, 0, undefined, `non-canonical address 0x${this.pendingTlbFault.page.toString(16)}`);
    }
    if (rc === UcErr.EXCEPTION && this.pendingTlbFault) {
      const f = this.pendingTlbFault;
      const rip = this.readRip();
      const cr2 = faultAddress(this, rip, f.page, f.access);
      this.count('exception:0xe');
      this.onEvent?.({ kind: 'exception', vector: VECTOR.PF, detail: `#PF cr2=0x${cr2.toString(16)} err=0x${f.errorCode.toString(16)}`, rip });
      const v = this.deliverEvent({ vector: VECTOR.PF, software: false, external: false, errorCode: f.errorCode, cr2 });
      return { kind: 'exception', vector: v };
    }
    if (rc === UcErr.INSN_INVALID) return this.invalidInstruction();
    if (rc !== UcErr.OK) {
      return { kind: 'error', message: `CPU ${this.index}: ${this.engine.errorText(rc)} at RIP 0x${this.readRip().toString(16)}` };
    }
    if (this.breakpointHit) {
      // An instruction breakpoint: #DB fault, RIP on the instruction (the code hook stopped before it).
      this.debugRegisters.hit(this.breakpointHit);
      const hit = this.breakpointHit;
      this.breakpointHit = 0;
      return this.raise(VECTOR.DB, 0, undefined, `instruction breakpoint, DR6 B-bits 0x${hit.toString(16)}`);
    }
    if (this.pendingSyscall) {
      // Unicorn's hook ran instead of QEMU's helper, and its RIP is past the SYSCALL: checks are ours.
      const mode = this.mode();
      const denied = syscallFault(this.readControl().efer, mode, this.readRflags());
      if (denied) {
        this.engine.writeReg(REG.RIP, this.readRip() - 2n);
        return this.raise(denied.vector, 0, undefined, denied.reason);
      }
      this.count('syscall');
      const rip = this.readRip();
      performSyscall(this, { star: this.engine.readMsr(MSR.STAR), lstar: this.engine.readMsr(MSR.LSTAR), cstar: this.engine.readMsr(MSR.CSTAR), sfmask: this.engine.readMsr(MSR.SFMASK) }, rip, mode as 'long' | 'compatibility' | 'protected');
      this.onEvent?.({ kind: 'syscall', rip });
      return { kind: 'requested' };
    }
    if (this.pendingIntr !== null && this.pendingIntr >= EXCP_VMEXIT) return this.svmExit(this.pendingIntr - EXCP_VMEXIT);
    if (this.pendingIntr !== null) {
      const vector = this.pendingIntr;
      const info = pendingExceptionInfo(this.engine.saveContext());
      const rip = this.readRip();
      const io = this.hostCpu.ioGate?.takeRaised(vector);
      this.count(`exception:0x${vector.toString(16)}`);
      this.onEvent?.({ kind: 'exception', vector, detail: `${vectorName(vector)}${info.isSoftware ? ' (INT n)' : ` err=0x${info.errorCode.toString(16)}`}${io ? ` (${io.reason})` : ''}`, rip });
      const start = info.isSoftware ? softwareInterruptStart(this.fetchBytes(rip - 2n, 2), vector, rip) : null;
      const v = this.deliverEvent({ vector, software: info.isSoftware, external: false, errorCode: info.errorCode, ...(io?.vector === VECTOR.PF ? { cr2: io.cr2 } : {}), ...(start !== null ? { instructionRip: start } : {}) });
      return { kind: 'exception', vector: v };
    }
    const stopped = this.hostCpu.slice32[SLICE.stopped / 4]!;
    if (stopped === 1 || count > 0) return { kind: 'preempted' };
    if (stopped === 2 || this.stopRequested) return { kind: 'requested' };
    // Nothing of ours stopped it: HLT (Unicorn returns OK with RIP after it).
    this.state = 'halted';
    this.count('hlt');
    this.onEvent?.({ kind: 'hlt', rip: this.readRip() });
    return { kind: 'halted' };
  }

  /** An intercept fired (RIP on the instruction): MSR accesses, MOV DR and RDTSC(P) are intercepted. */
  private svmExit(code: number): SliceExit {
    if (isDebugRegisterExit(code)) return this.movDebugRegister(code);
    if (code === SVM_EXIT_RDTSC) return this.rdtscExit();
    if (code === SVM_EXIT_WRITE_CR4) return this.movToCr4();
    if (code === SVM_EXIT_READ_CR8 || code === SVM_EXIT_WRITE_CR8) return this.movCr8(code === SVM_EXIT_WRITE_CR8);
    const handler = this.host.msrExits;
    if (code !== SVM_EXIT_MSR || !handler) return { kind: 'error', message: `CPU ${this.index}: unexpected SVM exit 0x${code.toString(16)} at RIP 0x${this.readRip().toString(16)}` };
    const rip = this.readRip();
    // EXITINFO1: 0 for RDMSR, 1 for WRMSR.
    const write = pendingExceptionInfo(this.engine.contextView()).errorCode === 1;
    const index = this.engine.readReg32(REG.ECX);
    this.count(write ? 'wrmsr' : 'rdmsr');
    let value: bigint;
    try {
      if (write) {
        value = (BigInt(this.engine.readReg32(REG.EDX)) << 32n) | BigInt(this.engine.readReg32(REG.EAX));
        if (!handler.write(this, index, value)) this.engine.writeMsr(index, value);
      } else {
        value = handler.read(this, index) ?? this.engine.readMsr(index);
        this.engine.writeReg(REG.RAX, value & 0xffff_ffffn);
        this.engine.writeReg(REG.RDX, value >> 32n);
      }
    } catch (e) {
      if (!(e instanceof MsrFault)) throw e;
      this.onEvent?.({ kind: 'msr', detail: `${write ? 'WRMSR' : 'RDMSR'} 0x${index.toString(16)}: #GP (${e.message})`, rip });
      return this.raise(VECTOR.GP, 0);
    }
    this.onEvent?.({ kind: 'msr', detail: `${write ? 'WRMSR' : 'RDMSR'} 0x${index.toString(16)} ${write ? '<-' : '->'} 0x${value.toString(16)}`, rip });
    this.completeInstruction(rip + 2n);
    return { kind: 'requested' };
  }

  /** RDTSC or RDTSCP exited (RIP on it; CR4.TSD was checked before the intercept): the TSC on virtual time. */
  private rdtscExit(): SliceExit {
    // Guest kernels read the TSC thousands of times a second: one context read and one page walk
    // (mode() and fetchBytes() would take three context copies and a walk per byte).
    const ctx = this.engine.contextView();
    const L = contextLayout();
    const dv = new DataView(ctx.buffer, ctx.byteOffset, ctx.byteLength);
    const long = (dv.getUint32(L.hflags, true) & HF.CS64) !== 0;
    const rip = this.readRip();
    const lin = long ? rip : (rip + dv.getBigUint64(L.segs + SEG.CS * SEG_CACHE_SIZE + 8, true)) & 0xffff_ffffn;
    const insn = decodeRdtsc(this.fetchInstructionBytes(lin, 3), long) ?? decodeRdtsc(this.fetchInstructionBytes(lin, 15), long);
    const read = this.host.msrExits?.readTsc;
    if (!insn || !read) return { kind: 'error', message: `CPU ${this.index}: RDTSC exit at RIP 0x${rip.toString(16)} ${insn ? 'without a TSC source' : 'is not on an RDTSC/RDTSCP'}` };
    // The exit's cost first (machine time is these units), then the read: back-to-back reads differ by it.
    this.units += BigInt(RDTSC_EXIT_NS); // a unit of machine time is 1 ns (NS_PER_UNIT)
    const tsc = read.call(this.host.msrExits, this);
    this.count(insn.rdtscp ? 'rdtscp' : 'rdtsc');
    this.engine.writeReg(REG.RAX, tsc & 0xffff_ffffn);
    this.engine.writeReg(REG.RDX, tsc >> 32n);
    if (insn.rdtscp) this.engine.writeReg(REG.RCX, this.engine.readMsr(MSR_TSC_AUX) & 0xffff_ffffn);
    this.completeInstruction(rip + BigInt(insn.length));
    return { kind: 'requested' };
  }

  /** `max` code bytes at linear `lin` with one walk, or byte by byte across a page end (fewer where fetches fail). */
  private fetchInstructionBytes(lin: bigint, max: number): Uint8Array {
    const inPage = 0x1000 - Number(lin & 0xfffn);
    const r = this.translate(lin, 'fetch');
    if (!r.ok) return new Uint8Array(0);
    const n = Math.min(max, inPage);
    const out = new Uint8Array(n);
    try {
      for (let i = 0; i < n; i++) out[i] = this.memoryView.readU8(Number(r.paddr) + i);
    } catch {
      return new Uint8Array(0);
    }
    if (n === max) return out;
    const rest: number[] = [];
    for (let i = n; i < max; i++) {
      const t = this.translate(lin + BigInt(i), 'fetch');
      if (!t.ok) break;
      rest.push(this.memoryView.readU8(Number(t.paddr)));
    }
    return Uint8Array.from([...out, ...rest]);
  }

  /** A MOV to/from DRn exited (RIP on it): emulated against our copy of the debug registers. */
  private movDebugRegister(code: number): SliceExit {
    const rip = this.readRip();
    const long = this.mode() === 'long';
    const m = decodeMovDr(this.fetchBytes(rip, 8), long);
    if (!m || m.dr !== (code & 7) || m.write !== code >= SVM_EXIT_WRITE_DR0) return { kind: 'error', message: `CPU ${this.index}: DR exit 0x${code.toString(16)} at RIP 0x${rip.toString(16)} is not a MOV DR` };
    const gpr = GPR[m.gpr]!;
    const r = this.debugRegisters.access(m, m.write ? this.engine.readReg(gpr) : 0n, this.readControl().cr4, long);
    this.count('mov-dr');
    if (r.kind === 'fault') return this.raise(r.vector, 0, undefined, r.reason);
    if (r.value !== undefined) this.engine.writeReg(gpr, long ? r.value : r.value & 0xffff_ffffn);
    if (m.write) this.syncBreakpoints();
    this.completeInstruction(rip + BigInt(m.length));
    return { kind: 'requested' };
  }

  /** A MOV to CR4 exited (RIP on it): reserved bits and mode rules checked (control-registers.ts), then applied. */
  private movToCr4(): SliceExit {
    const rip = this.readRip();
    const long = this.mode() === 'long';
    const m = decodeMovCr(this.fetchBytes(rip, 16), long);
    if (!m || !m.write || m.cr !== 4) return { kind: 'error', message: `CPU ${this.index}: CR4 write exit at RIP 0x${rip.toString(16)} is not a MOV to CR4` };
    const raw = this.engine.readReg(GPR[m.gpr]!);
    const value = long ? raw : raw & 0xffff_ffffn;
    this.count('mov-cr4');
    const now = this.readControl();
    this.cr4Allowed ??= cr4AllowedBits((leaf, sub) => cpuid(leaf, sub, this.cpuidConfig));
    const fault = cr4WriteFault(value, now, this.cr4Allowed);
    if (fault) return this.raise(VECTOR.GP, 0, undefined, fault);
    this.engine.writeReg(REG.CR4, value);
    this.completeInstruction(rip + BigInt(m.length));
    return { kind: 'requested' };
  }

  /** MOV from/to CR8 exited (RIP on it): CR8 is the LAPIC's TPR[7:4] (control-registers.ts). */
  private movCr8(write: boolean): SliceExit {
    const rip = this.readRip();
    const long = this.mode() === 'long';
    const m = decodeMovCr(this.fetchBytes(rip, 16), long);
    const cr8 = this.host.cr8;
    if (!m || m.cr !== 8 || m.write !== write || !cr8) return { kind: 'error', message: `CPU ${this.index}: CR8 exit at RIP 0x${rip.toString(16)} is not a MOV ${write ? 'to' : 'from'} CR8` };
    const gpr = GPR[m.gpr]!;
    this.count('mov-cr8');
    if (write) {
      const raw = this.engine.readReg(gpr);
      const value = long ? raw : raw & 0xffff_ffffn;
      if (value >> 4n) return this.raise(VECTOR.GP, 0, undefined, `MOV to CR8 0x${value.toString(16)}: reserved bits 63:4`);
      cr8.write(this, Number(value));
    } else {
      this.engine.writeReg(gpr, BigInt(cr8.read(this) & 0xf));
    }
    this.completeInstruction(rip + BigInt(m.length));
    return { kind: 'requested' };
  }

  /** Code hooks on the linear addresses of enabled instruction breakpoints (translated code is dropped so they apply). */
  private syncBreakpoints(): void {
    const want = this.debugRegisters.instructionBreakpoints();
    if (this.breakpointHooks.length === 0 && want.length === 0) return;
    for (const h of this.breakpointHooks) this.engine.removeHook(h);
    this.breakpointHooks = want.map(({ n, address }) =>
      this.engine.onCode(address, address, () => {
        // RF set: the instruction restarts after a #DB handler and must not fault again.
        if (this.readRflags() & RFLAGS.RF) return;
        this.breakpointHit |= 1 << n;
        this.engine.stop();
      }),
    );
    this.engine.flushCode();
  }

  /**
   * An external interrupt through delivery.ts, between runs. A triple fault is
   * reported by the next runSlice, like every other way a CPU stops.
   */
  private deliverExternal(vector: number, blob?: Uint8Array): void {
    try {
      this.deliverEvent({ vector, software: false, external: true }, blob);
    } catch (e) {
      if (!(e instanceof TripleFault)) throw e;
      this.deferredTripleFault = e.message;
      this.state = 'running';
    }
  }

  private takeDeferredTripleFault(): SliceExit | null {
    const reason = this.deferredTripleFault;
    if (reason === null) return null;
    this.deferredTripleFault = null;
    return this.tripleFault(reason);
  }

  /** `blob`: a context saved just now, reused by the first delivery attempt. */
  private deliverEvent(ev: EventToDeliver, blob?: Uint8Array): number {
    return deliver(this, ev, blob);
  }

  private tripleFault(reason: string): SliceExit {
    this.state = 'shutdown';
    this.count('triple-fault');
    this.onEvent?.({ kind: 'triple-fault', detail: reason, rip: this.readRip() });
    return { kind: 'triple-fault', reason };
  }

  /** MONITOR, MWAIT, VMCALL/VMMCALL and real invalid opcodes all end the run here. */
  private invalidInstruction(): SliceExit {
    const rip = this.readRip();
    const bytes = this.fetchBytes(rip, 3);
    const is = (...b: number[]): boolean => b.every((x, i) => bytes[i] === x);
    try {
      const insn = is(0x0f, 0x01, 0xc8) ? 'monitor' : is(0x0f, 0x01, 0xc9) ? 'mwait' : is(0x0f, 0x01, 0xc1) || is(0x0f, 0x01, 0xd9) ? 'vmcall' : null;
      const denied = insn && privilegeFault(insn, this.cpl());
      if (denied) return this.raise(denied.vector, 0, undefined, denied.reason);
      if (is(0x0f, 0x01, 0xc8)) {
        // MONITOR: RAX is the linear address (DS-relative outside 64-bit mode).
        const lin = this.engine.readReg(REG.RAX) + (this.mode() === 'long' ? 0n : this.segBase(SEG.DS));
        const r = this.translate(lin, 'read');
        if (!r.ok) return r.nonCanonical ? this.raise(VECTOR.GP, 0, undefined, `MONITOR at non-canonical 0x${lin.toString(16)}`) : this.raise(VECTOR.PF, r.errorCode, lin);
        const gpa = Number(r.paddr & ~63n);
        this.monitor = { paddr: this.hostPhysical(gpa), gpa, armed: true, triggered: false };
        this.completeInstruction(rip + 3n);
        this.count('monitor');
        return { kind: 'requested' };
      }
      if (is(0x0f, 0x01, 0xc9)) {
        const bad = mwaitExtensionFault(this.engine.readReg32(REG.ECX));
        if (bad) return this.raise(bad.vector, 0, undefined, bad.reason);
        this.completeInstruction(rip + 3n);
        this.count('mwait');
        this.mwaitBreakOnMaskedIrq = (this.engine.readReg32(REG.ECX) & 1) !== 0;
        if (!this.monitor || this.monitor.triggered) {
          // No armed monitor, or the line was written already: MWAIT falls through.
          this.monitor = null;
          return { kind: 'requested' };
        }
        this.state = 'mwait';
        this.onEvent?.({ kind: 'mwait', detail: `line 0x${this.monitor.paddr.toString(16)}`, rip });
        return { kind: 'mwait' };
      }
      if (is(0x0f, 0x01, 0xc1) || is(0x0f, 0x01, 0xd9)) {
        this.count('vmcall');
        if (this.host.hypercall?.(this)) {
          this.completeInstruction(rip + 3n);
          return { kind: 'hypercall' };
        }
      }
      return this.raise(VECTOR.UD, 0);
    } catch (e) {
      if (e instanceof TripleFault) return this.tripleFault(e.message);
      throw e;
    }
  }

  /**
   * Finishes an instruction we emulated (MONITOR, MWAIT, VMCALL, a dropped
   * store): RIP past it, and the STI/MOV-SS interrupt shadow is over, as
   * after any executed instruction (otherwise `sti; mwait` never wakes).
   */
  completeInstruction(nextRip: bigint): void {
    // The engine's own context buffer (no copy): read, patched and handed straight back.
    const blob = this.engine.contextView();
    const L = contextLayout();
    const dv = new DataView(blob.buffer, blob.byteOffset, blob.byteLength);
    const h = dv.getUint32(L.hflags, true);
    if (h & HF.INHIBIT_IRQ) {
      dv.setUint32(L.hflags, h & ~HF.INHIBIT_IRQ, true);
      this.engine.restoreContext(blob);
    }
    this.engine.writeReg(REG.RIP, nextRip);
  }

  private raise(vector: number, errorCode: number, cr2?: bigint, why?: string): SliceExit {
    const rip = this.readRip();
    this.count(`exception:0x${vector.toString(16)}`);
    this.onEvent?.({ kind: 'exception', vector, detail: why ? `${vectorName(vector)} (${why})` : vectorName(vector), rip });
    const v = this.deliverEvent({ vector, software: false, external: false, errorCode, ...(cr2 !== undefined ? { cr2 } : {}) });
    return { kind: 'exception', vector: v };
  }

  segBase(seg: number): bigint {
    const blob = this.engine.saveContext();
    return new DataView(blob.buffer).getBigUint64(contextLayout().segs + seg * SEG_CACHE_SIZE + 8, true);
  }

  /** Code bytes at a linear address (CS base applied outside long mode), empty where unmapped. */
  /** `n` data bytes at a linear address through the CPU's mappings, or null if any is not readable. */
  readLinearBytes(linear: bigint, n: number): Uint8Array | null {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) {
      const r = this.translate(linear + BigInt(i), 'read');
      if (!r.ok) return null;
      try {
        out[i] = this.memoryView.readU8(Number(r.paddr));
      } catch {
        return null;
      }
    }
    return out;
  }

  fetchBytes(rip: bigint, n: number): Uint8Array {
    const lin = rip + (this.mode() === 'long' ? 0n : this.segBase(SEG.CS));
    const out: number[] = [];
    for (let i = 0; i < n; i++) {
      const r = this.translate(lin + BigInt(i), 'fetch');
      if (!r.ok) break;
      try {
        out.push(this.memoryView.readU8(Number(r.paddr)));
      } catch {
        break;
      }
    }
    return Uint8Array.from(out);
  }

  count(what: string): void {
    this.counters[what] = (this.counters[what] ?? 0) + 1;
  }

  // --- Snapshottable CPU state: the raw context (fast, this Unicorn build only) plus the portable record.
  static readonly STATE_VERSION = 2;

  /** Identifies the raw context's layout: a raw context restores only where this matches. */
  static contextFingerprint(engine: UnicornEngine): string {
    const L = contextLayout();
    return `unicorn ${engine.lib.version.raw.toString(16)} size ${L.size} regs ${L.regs} segs ${L.segs} hflags ${L.hflags} cr ${L.cr}`;
  }

  saveState(): StateRecord {
    const engine = this.engine;
    // An interrupt QEMU faulted on is delivered now; one it holds for an interrupt window stays pending in the record.
    const faulted = this.injector?.afterRun() ?? null;
    if (faulted !== null) this.deliverExternal(faulted);
    return {
      version: X86Cpu.STATE_VERSION,
      fingerprint: X86Cpu.contextFingerprint(engine),
      context: engine.saveContext(),
      portable: capturePortable(engine),
      // A triple fault still to be reported by the next runSlice is where this CPU already is.
      state: this.deferredTripleFault !== null ? 'shutdown' : this.state,
      units: Number(this.units),
      monitor: this.monitor ? this.monitor.gpa : -1,
      monitorTriggered: this.monitor?.triggered ?? false,
      pendingInterrupt: this.injector?.pendingVector ?? -1,
      mwaitBreakOnMaskedIrq: this.mwaitBreakOnMaskedIrq,
      debugRegisters: this.debugRegisters.save(),
      nmiPending: this.nmiPending,
    };
  }

  /**
   * Restores a record from saveState(). The raw context is used when it came
   * from this build's layout; otherwise (or with `portable`) the portable record.
   * Every field is checked before anything changes.
   */
  restoreState(s: StateRecord, opts: { portable?: boolean; keepCode?: boolean } = {}): void {
    const who = `cpu${this.index}`;
    checkVersion(s, X86Cpu.STATE_VERSION, who);
    const st = stateString(s, 'state', who);
    if (!['running', 'halted', 'mwait', 'wait-for-sipi', 'shutdown'].includes(st)) throw new StateError(who, 'state', `unknown run state '${st}'`);
    const units = stateNumber(s, 'units', who);
    if (!Number.isSafeInteger(units) || units < 0) throw new StateError(who, 'units', `${units} is not a count of executed units`);
    const mon = stateNumber(s, 'monitor', who);
    const triggered = stateBoolean(s, 'monitorTriggered', who);
    const mwaitBreak = stateBoolean(s, 'mwaitBreakOnMaskedIrq', who);
    // Absent in records from before NMIs were delivered: none was latched.
    const nmiPending = s['nmiPending'] === undefined ? false : stateBoolean(s, 'nmiPending', who);
    const pendingInterrupt = stateNumber(s, 'pendingInterrupt', who);
    if (!Number.isInteger(pendingInterrupt) || pendingInterrupt < -1 || pendingInterrupt > 255) throw new StateError(who, 'pendingInterrupt', `${pendingInterrupt} is not a vector (or -1)`);
    const portable = stateRecord(s, 'portable', who);
    const engine = this.engine;
    const raw = !opts.portable && stateString(s, 'fingerprint', who) === X86Cpu.contextFingerprint(engine) ? stateBytes(s, 'context', who, engine.contextSize) : null;
    this.injector?.drop();
    this.deferredTripleFault = null;
    if (raw) {
      engine.restoreContext(raw);
    } else {
      const before = engine.saveContext();
      engine.restoreContext(resetContext!);
      try {
        applyPortable(engine, portable, who);
      } catch (e) {
        engine.restoreContext(before);
        throw e;
      }
    }
    // The control area is a host address: the saving machine's may not exist here.
    this.armMsrExits();
    engine.flushTlb();
    // Before this engine runs again (runSlice), not now: a TB flush clears the whole code buffer, and many restores in a row need one.
    // keepCode: the caller wrote every frame whose content changed through PhysicalMemory.write (a linked clone), so stale code went already.
    if (!opts.keepCode) this.hostCpu.flushCodePending = true;
    this.state = st as CpuRunState;
    this.units = BigInt(units);
    this.monitor = mon >= 0 ? { paddr: this.hostPhysical(mon), gpa: mon, armed: true, triggered } : null;
    this.mwaitBreakOnMaskedIrq = mwaitBreak;
    this.nmiPending = nmiPending;
    if (pendingInterrupt >= 0) {
      // Handed to the CPU before the save: QEMU delivers it when the window opens (delivery.ts at once without native injection).
      if (this.injector) this.injector.rearm(pendingInterrupt);
      else this.deliverExternal(pendingInterrupt);
    }
    // DR0-DR7 live here, not in the engine's context.
    this.debugRegisters.reset();
    if (s['debugRegisters'] !== undefined) {
      try {
        this.debugRegisters.restore(stateString(s, 'debugRegisters', who));
      } catch (e) {
        throw new StateError(who, 'debugRegisters', (e as Error).message);
      }
    }
    this.syncBreakpoints();
  }

  /** The context is thrown away (its VM or machine is gone); an engine it made for itself is closed. */
  close(): void {
    if (this.ownHostCpu) this.ownHostCpu.close();
    else if (this.isResident && !this.hostCpu.engine.isClosed) this.hostCpu.unbind(this);
  }
}

/** Power-on state from a MODE_16 engine: CS=F000 (base F0000, the ROM alias), IP=FFF0. */
function makeResetContext(): Uint8Array {
  const e16 = new UnicornEngine(UC_MODE_16);
  try {
    e16.writeReg(REG.CS, 0xf000);
    e16.writeReg(REG.IP, 0xfff0);
    e16.writeReg(REG.EDX, RESET_SIGNATURE);
    e16.writeReg(REG.EFLAGS, 2);
    // Reset values per the SDM: IDTR/GDTR base 0, limit 0xFFFF.
    e16.writeMmr(REG.IDTR, { selector: 0, base: 0n, limit: 0xffff, flags: 0 });
    e16.writeMmr(REG.GDTR, { selector: 0, base: 0n, limit: 0xffff, flags: 0 });
    return e16.saveContext();
  } finally {
    e16.close();
  }
}
