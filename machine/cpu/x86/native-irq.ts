/**
 * External interrupts delivered by QEMU's own hardirq path instead of ours.
 *
 * A hypervisor vCPU runs in SVM guest mode (for MSR exits, msr-intercept.ts).
 * In that mode QEMU services a virtual interrupt request (CPU_INTERRUPT_VIRQ)
 * before the next instruction whenever IF=1 and no interrupt shadow is
 * active: it reads the vector from the control area's V_INTR_VECTOR and
 * vectors through the guest's IVT or IDT itself (any mode, privilege changes,
 * IST), through its own TLB. An idle guest ticking at 1 kHz then costs no
 * JavaScript IDT, GDT and stack walks per tick, and V8 has that much less of
 * the tick path to compile.
 *
 * Unicorn has no API for it; libunicorn exports QEMU's cpu_interrupt_handler,
 * which needs the engine's CPUState. Where uc_struct keeps that pointer, how
 * far the CPU registers (the context) lie beyond it, and where its
 * interrupt_request word is are found once per process on a probe engine,
 * then checked end to end by delivering an interrupt through a real IDT. If
 * any step fails, delivery stays in delivery.ts and `nativeIrqLayout()` says
 * why.
 */
import { UnicornEngine } from '../unicorn/engine.js';
import { REG, UC_MODE_32, UC_PROT_ALL } from '../unicorn/constants.js';
import { contextLayout } from './context-layout.js';
import { armMsrIntercept, MSRPM_BYTES, svmLayout, VMCB_MSRPM_BASE_PA } from './msr-intercept.js';
import { engineCpuState } from './cpu-state.js';
import { cachedProbe, hasIntFields } from '../unicorn/probe-cache.js';

/** QEMU's CPU_INTERRUPT_VIRQ (CPU_INTERRUPT_TGT_INT_0). */
export const CPU_INTERRUPT_VIRQ = 0x100;
/** VMCB control area: V_INTR_VECTOR, the vector a virtual interrupt delivers. */
export const VMCB_V_INTR_VECTOR = 0x64;
/** env->eflags, after regs[16] and eip in QEMU's CPUX86State. */
const EFLAGS_IN_REGS = 17 * 8;

export interface NativeIrqLayout {
  /** Offset in uc_struct of `CPUState *cpu`. */
  cpuField: number;
  /** From CPUState to CPUX86State (where context offsets start). */
  envOffset: number;
  /** CPUState.interrupt_request. */
  request: number;
}

let cached: NativeIrqLayout | string | undefined;

/** How to raise a virtual interrupt in this Unicorn build, or why it cannot be done. */
export function nativeIrqLayout(): NativeIrqLayout | string {
  cached ??= discover();
  return cached;
}

const PROBE = { code: 0x1000, handler: 0x2000, idt: 0x3000, gdt: 0x3800, vmcb: 0x4000, msrpm: 0x5000, stack: 0x8000, vector: 0x31 } as const;

function discover(): NativeIrqLayout | string {
  const svm = svmLayout();
  if (typeof svm === 'string') return `needs SVM guest mode: ${svm}`;
  const found = engineCpuState();
  if (typeof found === 'string') return found;
  const sameCpuState = (v: unknown): v is NativeIrqLayout => isLayout(v) && v.cpuField === found.cpuField && v.envOffset === found.envOffset;
  return cachedProbe('nativeIrq', sameCpuState, () => probeDelivery(found, svm), (v) => typeof v !== 'string');
}

const isLayout = hasIntFields('cpuField', 'envOffset', 'request');

function probeDelivery(found: { cpuField: number; envOffset: number }, svm: Exclude<ReturnType<typeof svmLayout>, string>): NativeIrqLayout | string {
  const e = new UnicornEngine(UC_MODE_32);
  try {
    // Unicorn creates the engine's CPU on its first register access: before it, uc_struct's pointer is null.
    e.readReg(REG.EAX);
    const request = e.findInterruptRequest(found.cpuField, found.envOffset, CPU_INTERRUPT_VIRQ);
    if (request < 0) return `CPUState.interrupt_request not found (${-request - 1} candidates)`;
    const layout: NativeIrqLayout = { cpuField: found.cpuField, envOffset: found.envOffset, request };
    return deliverThroughIdt(e, layout, svm) ?? layout;
  } finally {
    e.close();
  }
}

/**
 * Flat 32-bit protected mode, one interrupt gate: an interrupt injected the
 * way vCPUs inject (InterruptInjector) must arrive with the frame the SDM
 * describes, and the window read from env must follow EFLAGS.IF.
 */
function deliverThroughIdt(e: UnicornEngine, layout: NativeIrqLayout, svm: Exclude<ReturnType<typeof svmLayout>, string>): string | null {
  const ram = new Uint8Array(new SharedArrayBuffer(0x10000));
  const dv = new DataView(ram.buffer);
  e.mapHost(0, ram, UC_PROT_ALL);
  ram.set([0x90, 0xf4], PROBE.code); // nop; hlt
  ram[PROBE.handler] = 0xf4; // hlt
  dv.setBigUint64(PROBE.gdt + 8, 0x00cf9a000000ffffn, true); // 0x08: flat ring-0 code
  dv.setBigUint64(PROBE.gdt + 16, 0x00cf92000000ffffn, true); // 0x10: flat ring-0 data
  const gate = PROBE.idt + PROBE.vector * 8;
  dv.setUint16(gate, PROBE.handler & 0xffff, true);
  dv.setUint16(gate + 2, 0x08, true);
  dv.setUint16(gate + 4, 0x8e00, true); // present 32-bit interrupt gate, DPL 0
  dv.setUint16(gate + 6, PROBE.handler >>> 16, true);
  dv.setBigUint64(PROBE.vmcb + VMCB_MSRPM_BASE_PA, BigInt(PROBE.msrpm), true);
  ram.fill(0, PROBE.msrpm, PROBE.msrpm + MSRPM_BYTES);
  e.writeMmr(REG.GDTR, { selector: 0, base: BigInt(PROBE.gdt), limit: 0x17, flags: 0 });
  e.writeMmr(REG.IDTR, { selector: 0, base: BigInt(PROBE.idt), limit: 0x7ff, flags: 0 });
  e.writeReg(REG.ESP, PROBE.stack);
  e.writeReg(REG.EFLAGS, 0x202);
  const blob = e.saveContext();
  armMsrIntercept(blob, svm, PROBE.vmcb);
  e.restoreContext(blob);
  const injector = new InterruptInjector({ engine: e }, layout, { writeU32: (paddr, value) => dv.setUint32(paddr, value, true) }, PROBE.vmcb);
  if (injector.window() !== 1) return 'probe: IF read from env disagrees with EFLAGS';
  injector.inject(PROBE.vector);
  const rc = e.start(BigInt(PROBE.code));
  const eip = Number(e.readReg(REG.EIP));
  if (rc !== 0 || eip !== PROBE.handler + 1) return `probe interrupt not delivered natively (rc ${rc}, EIP 0x${eip.toString(16)})`;
  if (injector.takeUndelivered() !== null) return 'probe interrupt delivered but still requested';
  const esp = Number(e.readReg(REG.ESP));
  const frame = [dv.getUint32(esp, true), dv.getUint32(esp + 4, true) & 0xffff, dv.getUint32(esp + 8, true)];
  if (esp !== PROBE.stack - 12 || frame[0] !== PROBE.code || (frame[2]! & 0x200) === 0) return `probe interrupt frame wrong (ESP 0x${esp.toString(16)}, EIP/CS/EFLAGS ${frame.map((v) => v.toString(16)).join('/')})`;
  if (Number(e.readReg(REG.EFLAGS)) & 0x200) return 'probe interrupt gate left IF set';
  if (injector.window() !== 0) return 'probe: IF read from env disagrees with EFLAGS';
  return null;
}

/** Where the injector stores the vector: host memory holding the vCPU's control area. */
export interface VectorSlot {
  writeU32(paddr: number, value: number): void;
}

/**
 * One vCPU's native injection: the request bit in QEMU's CPUState, the vector
 * in the control area, and what became of an injected interrupt.
 */
export class InterruptInjector {
  private injected: number | null = null;
  private faulted: number | null = null;
  private readonly eflagsAt: number;
  private readonly hflagsAt: number;

  constructor(
    /** The CPU whose engine this injects into (a getter: a vCPU may move between host engines). */
    private readonly cpu: { readonly engine: UnicornEngine },
    private readonly layout: NativeIrqLayout,
    private readonly memory: VectorSlot,
    private readonly controlArea: number,
  ) {
    const L = contextLayout();
    this.eflagsAt = layout.envOffset + L.regs + EFLAGS_IN_REGS;
    this.hflagsAt = layout.envOffset + L.hflags;
  }

  /** An interrupt was handed to QEMU (or is held while the context is parked) and has not been delivered yet. */
  get pending(): boolean {
    return this.injected !== null;
  }

  /** The vector handed over and not delivered yet, or null. */
  get pendingVector(): number | null {
    return this.injected;
  }

  /**
   * After a run: the vector QEMU faulted on while delivering (withdrawn, for
   * delivery.ts to deliver with the SDM's rules), or null. An interrupt that
   * QEMU is still holding because IF=0 or an interrupt shadow kept the window
   * shut stays requested: QEMU delivers it at the first instruction boundary
   * where the window opens, as hardware does.
   */
  afterRun(): number | null {
    const faulted = this.faulted;
    this.faulted = null;
    if (faulted !== null) return faulted;
    const vector = this.injected;
    if (vector === null) return null;
    // QEMU clears the request when it delivers; test-and-clear, and put it back if it is still waiting.
    if (this.cpu.engine.takeIrq(this.layout.cpuField, this.layout.request, CPU_INTERRUPT_VIRQ)) this.cpu.engine.raiseIrq(this.layout.cpuField, CPU_INTERRUPT_VIRQ);
    else this.injected = null;
    return null;
  }

  /** The context leaves its engine: take a waiting request out of QEMU's CPU (the vector stays pending here). */
  park(): void {
    const vector = this.injected;
    if (vector === null) return;
    if (!this.cpu.engine.takeIrq(this.layout.cpuField, this.layout.request, CPU_INTERRUPT_VIRQ)) this.injected = null;
  }

  /** The context is loaded into an engine (or restored): raise a pending vector in it again. */
  rearm(vector: number | null = this.injected): void {
    if (vector === null) return;
    this.inject(vector);
  }

  /** Bit 0: EFLAGS.IF, bit 1: interrupt shadow; read from QEMU's env (no context copy). */
  window(): number {
    return this.cpu.engine.irqWindow(this.layout.cpuField, this.eflagsAt, this.hflagsAt);
  }

  /** QEMU vectors it through the guest's IDT before the next instruction (the caller checked the window). */
  inject(vector: number): void {
    this.memory.writeU32(this.controlArea + VMCB_V_INTR_VECTOR, vector);
    this.cpu.engine.raiseIrq(this.layout.cpuField, CPU_INTERRUPT_VIRQ);
    this.injected = vector;
  }

  /**
   * From the exception hook: if the request is still up, the exception came from
   * QEMU delivering it. Withdraw it now, or QEMU retries the delivery (and
   * faults again) before it ever looks at the stop request.
   */
  noteException(): void {
    if (this.injected !== null) this.faulted = this.withdraw();
  }

  /** After a run or before a save: the vector QEMU did not deliver (withdrawn), or null. */
  takeUndelivered(): number | null {
    const faulted = this.faulted;
    this.faulted = null;
    return faulted ?? this.withdraw();
  }

  /** The CPU's state is being replaced (reset, restore): forget any injection. */
  drop(): void {
    this.takeUndelivered();
  }

  private withdraw(): number | null {
    const vector = this.injected;
    if (vector === null) return null;
    this.injected = null;
    return this.cpu.engine.takeIrq(this.layout.cpuField, this.layout.request, CPU_INTERRUPT_VIRQ) ? vector : null;
  }
}
