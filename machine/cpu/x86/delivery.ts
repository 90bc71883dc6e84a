/**
 * Interrupt and exception delivery, ours rather than Unicorn's (which never
 * vectors through the guest IDT): real-mode IVT, 32-bit IDT gates with
 * privilege changes through the TSS, and 64-bit IDT gates with IST, plus the
 * double-fault and triple-fault rules of the SDM (vol. 3, 6.15).
 */
import { contextLayout, HF, SEG, SEG_CACHE_SIZE, type ContextLayout } from './context-layout.js';
import { decodeDescriptor, decodeGate, DESC, dpl, hflagsFor, type SegCache } from './segments.js';
import { walk, type Access, type PagingControl, type PhysicalReader } from './paging.js';
import { CR0, EFER, RFLAGS } from './registers.js';

export const VECTOR = { DE: 0, DB: 1, NMI: 2, BP: 3, OF: 4, BR: 5, UD: 6, NM: 7, DF: 8, TS: 10, NP: 11, SS: 12, GP: 13, PF: 14, MF: 16, AC: 17, MC: 18, XM: 19 } as const;

const HAS_ERROR_CODE = new Set([8, 10, 11, 12, 13, 14, 17, 21, 29, 30]);
const CONTRIBUTORY = new Set([0, 10, 11, 12, 13]);

export const VECTOR_NAMES: Record<number, string> = {
  0: '#DE divide error', 1: '#DB debug', 2: 'NMI', 3: '#BP breakpoint', 4: '#OF overflow', 5: '#BR bound', 6: '#UD invalid opcode', 7: '#NM device not available',
  8: '#DF double fault', 10: '#TS invalid TSS', 11: '#NP segment not present', 12: '#SS stack fault', 13: '#GP general protection', 14: '#PF page fault',
  16: '#MF x87 error', 17: '#AC alignment check', 18: '#MC machine check', 19: '#XM SIMD exception',
};

export const vectorName = (v: number): string => VECTOR_NAMES[v] ?? (v < 32 ? `exception ${v}` : `interrupt 0x${v.toString(16)}`);

/** A fault raised while delivering another event. */
export class DeliveryFault {
  constructor(
    readonly vector: number,
    readonly errorCode: number,
    readonly cr2?: bigint,
    readonly reason = '',
  ) {}
}

export class TripleFault extends Error {
  override name = 'TripleFault';
}

/** What delivery needs from the CPU: register access and the context blob. */
/** Physical memory as delivery needs it: the walker's reader plus byte ranges. */
export interface DeliveryMemory extends PhysicalReader {
  readBytes(paddr: number, length: number): Uint8Array;
  writeBytes(paddr: number, data: Uint8Array): void;
}

export interface DeliveryCpu {
  readRip(): bigint;
  readRsp(): bigint;
  readRflags(): number;
  readControl(): PagingControl;
  saveContext(): Uint8Array;
  /** Restores the blob, then writes RIP/RSP/RFLAGS through the API (RFLAGS must not go through the blob: QEMU keeps flags lazily). */
  commit(blob: Uint8Array, rip: bigint, rsp: bigint, rflags: number): void;
  readonly memory: DeliveryMemory;
}

export interface EventToDeliver {
  vector: number;
  /** INT n / INT3 / INTO: gate DPL is checked against CPL. */
  software: boolean;
  /** External interrupt (from PIC/LAPIC): no error code, EXT bit in faults. */
  external: boolean;
  errorCode?: number;
  cr2?: bigint;
  /** INT n / INT3 / INTO: the instruction's own address, pushed by a fault raised while delivering it (it restarts). */
  instructionRip?: bigint;
  /** The RIP to push instead of the current one (set by deliver() for such a fault). */
  rip?: bigint;
}

/**
 * Where the INT n / INT3 / INTO / INT1 that raised `vector` starts, from the bytes before `nextRip`
 * (Unicorn reports software interrupts with RIP after the instruction); null when they do not match.
 */
export function softwareInterruptStart(before: Uint8Array, vector: number, nextRip: bigint): bigint | null {
  const [b2, b1] = before.length >= 2 ? [before[before.length - 2], before[before.length - 1]] : [undefined, before[before.length - 1]];
  if (b2 === 0xcd && b1 === vector) return nextRip - 2n;
  if ((vector === 3 && b1 === 0xcc) || (vector === 4 && b1 === 0xce) || (vector === 1 && b1 === 0xf1)) return nextRip - 1n;
  return null;
}

/** Snapshot of the CPU inside one delivery; committed at the end. */
class Frame {
  readonly blob: Uint8Array;
  readonly dv: DataView;
  readonly L: ContextLayout;
  readonly ctl: PagingControl;
  rip: bigint;
  rsp: bigint;
  rflags: number;

  constructor(
    readonly cpu: DeliveryCpu,
    savedContext?: Uint8Array,
  ) {
    this.L = contextLayout();
    this.blob = savedContext ?? cpu.saveContext();
    this.dv = new DataView(this.blob.buffer, this.blob.byteOffset, this.blob.byteLength);
    this.ctl = cpu.readControl();
    // RIP and RSP straight from the fresh context; RFLAGS through the API (QEMU computes arithmetic flags lazily).
    this.rip = this.dv.getBigUint64(this.L.regs + 16 * 8, true);
    this.rsp = this.dv.getBigUint64(this.L.regs + 4 * 8, true);
    this.rflags = cpu.readRflags();
  }

  seg(i: number): SegCache {
    const o = this.L.segs + i * SEG_CACHE_SIZE;
    return { selector: this.dv.getUint32(o, true), base: this.dv.getBigUint64(o + 8, true), limit: this.dv.getUint32(o + 16, true), flags: this.dv.getUint32(o + 20, true) };
  }

  setSeg(i: number, s: SegCache): void {
    const o = this.L.segs + i * SEG_CACHE_SIZE;
    this.dv.setUint32(o, s.selector, true);
    this.dv.setBigUint64(o + 8, s.base, true);
    this.dv.setUint32(o + 16, s.limit >>> 0, true);
    this.dv.setUint32(o + 20, s.flags >>> 0, true);
  }

  get hflags(): number {
    return this.dv.getUint32(this.L.hflags, true);
  }

  set hflags(v: number) {
    this.dv.setUint32(this.L.hflags, v >>> 0, true);
  }

  get cpl(): number {
    return this.hflags & HF.CPL_MASK;
  }

  /** General register by QEMU index (RAX=0, RCX=1, ... R15=15). */
  setGpr(i: number, v: bigint): void {
    this.dv.setBigUint64(this.L.regs + i * 8, v, true);
  }

  setCr2(v: bigint): void {
    this.dv.setBigUint64(this.L.cr + 2 * 8, v, true);
  }

  /** Reload CS and SS caches and recompute hflags like QEMU's cpu_x86_load_seg_cache. */
  loadCsSs(cs: SegCache, ss: SegCache): void {
    this.setSeg(SEG.CS, cs);
    this.setSeg(SEG.SS, ss);
    this.hflags = hflagsFor(this.hflags, cs, ss, this.seg(SEG.DS).base, this.seg(SEG.ES).base, (this.ctl.cr0 & CR0.PE) !== 0n, (this.rflags & RFLAGS.VM) !== 0);
  }

  /** Walks once per page and calls `chunk` with each page's physical address and span. */
  private pages(addr: bigint, len: number, access: Access, chunk: (paddr: number, offset: number, n: number) => void): void {
    let a = addr;
    for (let done = 0; done < len; ) {
      const n = Math.min(len - done, 4096 - Number(a & 0xfffn));
      chunk(this.translate(a, access), done, n);
      done += n;
      a += BigInt(n);
    }
  }

  /** The physical address of a supervisor access by the CPU itself; #PF if the walk fails. */
  private translate(addr: bigint, access: Access): number {
    const r = walk(this.cpu.memory, this.ctl, addr, { access, user: false, setAccessedDirty: true, recordSteps: false });
    if (!r.ok) throw new DeliveryFault(VECTOR.PF, r.errorCode, addr, r.reason);
    return Number(r.paddr);
  }

  /** Physical address of [addr, addr+len) when it lies in one page (the usual case: gates, descriptors, frames). */
  private onePage(addr: bigint, len: number, access: Access): number | null {
    return Number(addr & 0xfffn) + len > 4096 ? null : this.translate(addr, access);
  }

  read(addr: bigint, len: number): Uint8Array {
    const p = this.onePage(addr, len, 'read');
    if (p !== null) return this.cpu.memory.readBytes(p, len);
    const out = new Uint8Array(len);
    this.pages(addr, len, 'read', (p, off, n) => out.set(this.cpu.memory.readBytes(p, n), off));
    return out;
  }

  write(addr: bigint, bytes: Uint8Array): void {
    const p = this.onePage(addr, bytes.length, 'write');
    if (p !== null) return this.cpu.memory.writeBytes(p, bytes);
    // Translate every page first: a fault must not leave a half-written frame.
    const spans: [number, number, number][] = [];
    this.pages(addr, bytes.length, 'write', (p, off, n) => spans.push([p, off, n]));
    for (const [p, off, n] of spans) this.cpu.memory.writeBytes(p, bytes.subarray(off, off + n));
  }

  commit(): void {
    this.dv.setInt32(this.L.oldException, -1, true);
    this.cpu.commit(this.blob, this.rip, this.rsp, this.rflags);
  }
}

const le = (v: bigint, n: number): Uint8Array => {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = Number((v >> BigInt(8 * i)) & 0xffn);
  return out;
};

/** An interrupt frame as it lies on the stack: `pushed[0]` pushed first, so highest. */
function stackImage(pushed: bigint[], width: number): Uint8Array {
  const out = new Uint8Array(pushed.length * width);
  const dv = new DataView(out.buffer);
  for (let i = 0; i < pushed.length; i++) {
    const at = (pushed.length - 1 - i) * width;
    const v = pushed[i]!;
    if (width === 8) dv.setBigUint64(at, v, true);
    else if (width === 4) dv.setUint32(at, Number(v & 0xffff_ffffn), true);
    else dv.setUint16(at, Number(v & 0xffffn), true);
  }
  return out;
}

/**
 * Delivers an event, applying the double/triple-fault rules when delivery
 * itself faults. Returns the vector that finally ran (e.g. 8 after a #DF).
 * Throws TripleFault when the CPU would shut down.
 */
export function deliver(cpu: DeliveryCpu, ev: EventToDeliver, savedContext?: Uint8Array): number {
  let current = ev;
  for (let depth = 0; ; depth++) {
    try {
      deliverOnce(cpu, current, depth === 0 ? savedContext : undefined);
      return current.vector;
    } catch (e) {
      if (!(e instanceof DeliveryFault)) throw e;
      const first = current.vector;
      const second = e.vector;
      if (first === VECTOR.DF || depth >= 2) {
        throw new TripleFault(`triple fault: ${vectorName(second)} while delivering ${vectorName(first)}${e.reason ? ` (${e.reason})` : ''}`);
      }
      // A fault while delivering INT n pushes the INT's own address: the handler's IRET retries it (SDM Vol. 3 6.5).
      const restart = current.instructionRip ?? current.rip;
      const promote = (CONTRIBUTORY.has(first) && CONTRIBUTORY.has(second)) || (first === VECTOR.PF && (CONTRIBUTORY.has(second) || second === VECTOR.PF));
      current = promote
        ? { vector: VECTOR.DF, software: false, external: false, errorCode: 0 }
        : { vector: second, software: false, external: false, errorCode: e.errorCode, ...(e.cr2 !== undefined ? { cr2: e.cr2 } : {}) };
      if (restart !== undefined) current = { ...current, rip: restart };
    }
  }
}

/** Fault-class exceptions (SDM Vol. 3 6.15): the instruction restarts after the handler. */
const FAULT_CLASS = new Set([0, 5, 6, 7, 10, 11, 12, 13, 14, 16, 17, 19, 20, 21]);

function deliverOnce(cpu: DeliveryCpu, ev: EventToDeliver, savedContext?: Uint8Array): void {
  const f = new Frame(cpu, savedContext);
  if (ev.rip !== undefined) f.rip = ev.rip;
  // SDM Vol. 3 17.3.1.1: every fault-class exception but an instruction-breakpoint #DB pushes RF = 1,
  // so the restarted instruction does not hit its own instruction breakpoint again.
  if (!ev.software && !ev.external && FAULT_CLASS.has(ev.vector)) f.rflags |= RFLAGS.RF;
  if (ev.cr2 !== undefined) f.setCr2(ev.cr2);
  const pe = (f.ctl.cr0 & CR0.PE) !== 0n;
  if (!pe) return deliverReal(f, ev);
  if ((f.ctl.efer & EFER.LMA) !== 0n) return deliverLong(f, ev);
  return deliverProtected(f, ev);
}

function deliverReal(f: Frame, ev: EventToDeliver): void {
  const idt = f.seg(SEG.IDT);
  const off = BigInt(ev.vector * 4);
  if (off + 3n > BigInt(idt.limit)) throw new DeliveryFault(VECTOR.GP, 0, undefined, `IVT limit 0x${idt.limit.toString(16)} excludes vector ${ev.vector}`);
  const entry = new DataView(f.read(idt.base + off, 4).buffer);
  const ip = entry.getUint16(0, true);
  const cs = entry.getUint16(2, true);
  const ss = f.seg(SEG.SS);
  let sp = Number(f.rsp & 0xffffn);
  const push16 = (v: number): void => {
    sp = (sp - 2) & 0xffff;
    f.write(ss.base + BigInt(sp), le(BigInt(v), 2));
  };
  push16(f.rflags & 0xffff);
  push16(f.seg(SEG.CS).selector);
  push16(Number(f.rip & 0xffffn));
  const oldCs = f.seg(SEG.CS);
  f.setSeg(SEG.CS, { ...oldCs, selector: cs, base: BigInt(cs << 4) });
  f.rsp = (f.rsp & ~0xffffn) | BigInt(sp);
  f.rip = BigInt(ip);
  f.rflags &= ~(RFLAGS.IF | RFLAGS.TF | RFLAGS.AC | RFLAGS.RF);
  f.commit();
}

/** Reads a GDT/LDT descriptor for `selector` (protected or long mode). */
function descriptor(f: Frame, selector: number, vectorForErr: number, ext: number): SegCache {
  const idx = selector & ~7;
  const table = selector & 4 ? f.seg(SEG.LDT) : f.seg(SEG.GDT);
  if ((selector & ~3) === 0) throw new DeliveryFault(VECTOR.GP, ext, undefined, `null code selector in gate for vector ${vectorForErr}`);
  if (idx + 7 > table.limit) throw new DeliveryFault(VECTOR.GP, (selector & 0xfffc) | ext, undefined, `selector 0x${selector.toString(16)} beyond ${selector & 4 ? 'LDT' : 'GDT'} limit`);
  const raw = new DataView(f.read(table.base + BigInt(idx), 8).buffer);
  const d = decodeDescriptor(selector, raw.getUint32(0, true), raw.getUint32(4, true));
  if (!(d.flags & DESC.S) || !(d.flags & DESC.CODE)) throw new DeliveryFault(VECTOR.GP, (selector & 0xfffc) | ext, undefined, `selector 0x${selector.toString(16)} is not a code segment`);
  if (!(d.flags & DESC.P)) throw new DeliveryFault(VECTOR.NP, (selector & 0xfffc) | ext, undefined, `code segment 0x${selector.toString(16)} not present`);
  return d;
}

function gateFor(f: Frame, ev: EventToDeliver, long: boolean): { gate: ReturnType<typeof decodeGate>; ext: number } {
  const ext = ev.external ? 1 : 0;
  const size = long ? 16 : 8;
  const idt = f.seg(SEG.IDT);
  const errIdt = ev.vector * 8 + 2 + ext;
  if (ev.vector * size + size - 1 > idt.limit) throw new DeliveryFault(VECTOR.GP, errIdt, undefined, `IDT limit 0x${idt.limit.toString(16)} excludes vector ${ev.vector}`);
  const gate = decodeGate(f.read(idt.base + BigInt(ev.vector * size), size), long);
  const okTypes = long ? [0xe, 0xf] : [0x6, 0x7, 0xe, 0xf];
  if (!okTypes.includes(gate.type)) {
    const what = gate.type === 5 ? 'task gates are not supported' : `gate type 0x${gate.type.toString(16)} is invalid`;
    throw new DeliveryFault(VECTOR.GP, errIdt, undefined, `IDT vector ${ev.vector}: ${what}`);
  }
  if (ev.software && gate.dpl < f.cpl) throw new DeliveryFault(VECTOR.GP, errIdt, undefined, `INT ${ev.vector} from CPL ${f.cpl} through a DPL ${gate.dpl} gate`);
  if (!gate.present) throw new DeliveryFault(VECTOR.NP, errIdt, undefined, `IDT vector ${ev.vector} not present`);
  return { gate, ext };
}

function pushesErrorCode(ev: EventToDeliver): boolean {
  return !ev.software && !ev.external && HAS_ERROR_CODE.has(ev.vector);
}

function deliverProtected(f: Frame, ev: EventToDeliver): void {
  if (f.rflags & RFLAGS.VM) throw new DeliveryFault(VECTOR.GP, 0, undefined, 'virtual-8086 mode is not supported');
  const { gate, ext } = gateFor(f, ev, false);
  const cs = descriptor(f, gate.selector, ev.vector, ext);
  const is32 = (gate.type & 8) !== 0;
  const oldCpl = f.cpl;
  const newCpl = cs.flags & (1 << 10) ? oldCpl : dpl(cs.flags); // conforming code keeps CPL
  const oldCs = f.seg(SEG.CS);
  const oldSs = f.seg(SEG.SS);
  let ss = oldSs;
  let esp = f.rsp & 0xffff_ffffn;
  const frame: bigint[] = [];
  if (newCpl < oldCpl) {
    // Inner privilege: new stack from the TSS (32-bit TSS: ESPn at 4+8n, SSn at 8+8n).
    const tr = f.seg(SEG.TR);
    const tssOff = 4 + 8 * newCpl;
    if (tssOff + 5 > tr.limit) throw new DeliveryFault(VECTOR.TS, (tr.selector & 0xfffc) | ext, undefined, 'TSS too small for the stack switch');
    const t = new DataView(f.read(tr.base + BigInt(tssOff), 6).buffer);
    const newEsp = BigInt(t.getUint32(0, true));
    const ssSel = t.getUint16(4, true);
    const g = f.seg(SEG.GDT);
    if ((ssSel & ~7) + 7 > g.limit || (ssSel & ~3) === 0) throw new DeliveryFault(VECTOR.TS, (ssSel & 0xfffc) | ext, undefined, `TSS SS${newCpl} selector 0x${ssSel.toString(16)} invalid`);
    const raw = new DataView(f.read(g.base + BigInt(ssSel & ~7), 8).buffer);
    ss = decodeDescriptor(ssSel, raw.getUint32(0, true), raw.getUint32(4, true));
    esp = newEsp;
    frame.push(BigInt(oldSs.selector), f.rsp & 0xffff_ffffn);
  }
  frame.push(BigInt(f.rflags), BigInt(oldCs.selector), f.rip & 0xffff_ffffn);
  if (pushesErrorCode(ev)) frame.push(BigInt(ev.errorCode ?? 0));
  const w = is32 ? 4 : 2;
  const mask = ss.flags & DESC.B ? 0xffff_ffffn : 0xffffn;
  esp = (esp - BigInt(frame.length * w)) & mask;
  f.write(ss.base + esp, stackImage(frame, w));
  f.loadCsSs({ ...cs, selector: (gate.selector & 0xfffc) | newCpl }, newCpl < oldCpl ? { ...ss, selector: (ss.selector & 0xfffc) | newCpl } : ss);
  f.rsp = newCpl < oldCpl ? esp : (f.rsp & ~mask) | esp;
  f.rip = gate.offset & (is32 ? 0xffff_ffffn : 0xffffn);
  f.rflags &= ~(RFLAGS.TF | RFLAGS.NT | RFLAGS.RF | RFLAGS.VM);
  if (!(gate.type & 1)) f.rflags &= ~RFLAGS.IF;
  f.commit();
}

function deliverLong(f: Frame, ev: EventToDeliver): void {
  const { gate, ext } = gateFor(f, ev, true);
  const cs = descriptor(f, gate.selector, ev.vector, ext);
  if (!(cs.flags & DESC.L) || cs.flags & DESC.B) throw new DeliveryFault(VECTOR.GP, (gate.selector & 0xfffc) | ext, undefined, `IDT vector ${ev.vector}: target 0x${gate.selector.toString(16)} is not a 64-bit code segment`);
  const oldCpl = f.cpl;
  const newCpl = cs.flags & (1 << 10) ? oldCpl : dpl(cs.flags);
  const oldCs = f.seg(SEG.CS);
  const oldSs = f.seg(SEG.SS);
  let rsp = f.rsp;
  if (newCpl < oldCpl || gate.ist !== 0) {
    // 64-bit TSS: RSPn at 4+8n, ISTn at 36+8(n-1).
    const tr = f.seg(SEG.TR);
    const off = gate.ist !== 0 ? 36 + 8 * (gate.ist - 1) : 4 + 8 * newCpl;
    if (off + 7 > tr.limit) throw new DeliveryFault(VECTOR.TS, (tr.selector & 0xfffc) | ext, undefined, `TSS limit 0x${tr.limit.toString(16)} excludes ${gate.ist ? `IST${gate.ist}` : `RSP${newCpl}`}`);
    rsp = new DataView(f.read(tr.base + BigInt(off), 8).buffer).getBigUint64(0, true);
  }
  rsp &= ~0xfn; // the CPU aligns the new stack to 16 bytes
  const frame: bigint[] = [BigInt(oldSs.selector), f.rsp, BigInt(f.rflags), BigInt(oldCs.selector), f.rip];
  if (pushesErrorCode(ev)) frame.push(BigInt(ev.errorCode ?? 0));
  rsp = (rsp - BigInt(frame.length * 8)) & 0xffff_ffff_ffff_ffffn;
  f.write(rsp, stackImage(frame, 8));
  const newSs: SegCache = newCpl < oldCpl ? { selector: newCpl, base: 0n, limit: 0, flags: newCpl << DESC.DPL_SHIFT } : oldSs;
  f.loadCsSs({ ...cs, selector: (gate.selector & 0xfffc) | newCpl }, newSs);
  f.rsp = rsp;
  f.rip = gate.offset;
  f.rflags &= ~(RFLAGS.TF | RFLAGS.NT | RFLAGS.RF | RFLAGS.VM);
  if (!(gate.type & 1)) f.rflags &= ~RFLAGS.IF;
  f.commit();
}

/** SYSCALL in long mode (Unicorn's is a no-op): RIP/RFLAGS into RCX/R11, CPL 0 from STAR. */
/**
 * SYSCALL as AMD defines it (our identity is AuthenticAMD; APM Vol. 3): from 64-bit mode to LSTAR,
 * from compatibility mode to CSTAR, both into 64-bit CS with RFLAGS masked by SFMASK and saved in
 * R11; from legacy protected mode to STAR[31:0] in a flat 32-bit CS with IF, VM and RF cleared.
 */
export function performSyscall(cpu: DeliveryCpu, msrs: { star: bigint; lstar: bigint; cstar: bigint; sfmask: bigint }, nextRip: bigint, mode: 'long' | 'compatibility' | 'protected'): void {
  const f = new Frame(cpu);
  const sel = Number((msrs.star >> 32n) & 0xffffn);
  const ss: SegCache = { selector: (sel + 8) & 0xfffc, base: 0n, limit: 0xffffffff, flags: DESC.P | DESC.S | DESC.W | DESC.A | DESC.B | DESC.G };
  if (mode === 'protected') {
    f.setGpr(1, nextRip & 0xffff_ffffn); // ECX
    f.loadCsSs({ selector: sel & 0xfffc, base: 0n, limit: 0xffffffff, flags: DESC.P | DESC.S | DESC.CODE | DESC.W | DESC.A | DESC.B | DESC.G }, ss);
    f.rflags = (f.rflags & ~(RFLAGS.IF | RFLAGS.VM | RFLAGS.RF)) | 2;
    f.rip = msrs.star & 0xffff_ffffn;
    f.commit();
    return;
  }
  f.setGpr(1, nextRip); // RCX
  f.setGpr(11, BigInt(f.rflags & ~RFLAGS.RF)); // R11
  const cs: SegCache = { selector: sel & 0xfffc, base: 0n, limit: 0xffffffff, flags: DESC.P | DESC.S | DESC.CODE | DESC.W | DESC.A | DESC.L | DESC.G };
  f.loadCsSs(cs, ss);
  f.rflags = (f.rflags & ~Number(msrs.sfmask & 0xffff_ffffn) & ~RFLAGS.RF) | 2;
  f.rip = mode === 'long' ? msrs.lstar : msrs.cstar;
  f.commit();
}

/** Inhibit window after STI / MOV SS: no external interrupt for one instruction. */
export function interruptsInhibited(blob: Uint8Array): boolean {
  const L = contextLayout();
  return (new DataView(blob.buffer, blob.byteOffset).getUint32(L.hflags, true) & HF.INHIBIT_IRQ) !== 0;
}

/** For Unicorn-raised exceptions: the error code and whether it was INT n. */
export function pendingExceptionInfo(blob: Uint8Array): { errorCode: number; isSoftware: boolean } {
  const L = contextLayout();
  const dv = new DataView(blob.buffer, blob.byteOffset);
  return { errorCode: dv.getInt32(L.errorCode, true) >>> 0, isSoftware: dv.getInt32(L.exceptionIsInt, true) !== 0 };
}
