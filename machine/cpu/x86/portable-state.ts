/**
 * A CPU's architectural state in a form that does not depend on Unicorn's
 * context layout: registers by name, segment caches as (selector, base, limit,
 * flags), control and debug registers, the MSRs an OS programs, x87 and SSE
 * state, and QEMU's hflags (whose bits are QEMU's encoding of CPL, the
 * interrupt shadow and the mode, stable across Unicorn 2.x builds). A raw
 * context restores only into the build that made it; this record restores
 * into any build whose context layout the start-up self-test can find.
 */
import type { UnicornEngine } from '../unicorn/engine.js';
import { REG } from '../unicorn/constants.js';
import { contextLayout, SEG, SEG_CACHE_SIZE } from './context-layout.js';
import { MSR } from './registers.js';
import { StateError, stateRecord, type StateRecord, type StateValue } from '../../state.js';

export const PORTABLE_CPU_VERSION = 1;

const GPRS = ['RAX', 'RBX', 'RCX', 'RDX', 'RSI', 'RDI', 'RBP', 'RSP', 'R8', 'R9', 'R10', 'R11', 'R12', 'R13', 'R14', 'R15'] as const;
const SEGMENTS = ['ES', 'CS', 'SS', 'DS', 'FS', 'GS', 'LDT', 'TR'] as const;
/** Unicorn register ids not in constants.ts (unicorn/x86.h, 2.x). */
const X = { DR0: 66, ST0: 114, XMM0: 122, MXCSR: 249, FPSW: 31, FPCW: 246, FPTAG: 247, FIP: 254, FCS: 255, FDP: 256, FDS: 257, FOP: 258 } as const;
/** MSRs an OS programs that live in the CPU model (EFER comes first on restore: it changes what CR0 means). */
const SAVED_MSRS: Record<string, number> = {
  EFER: MSR.EFER,
  STAR: MSR.STAR,
  LSTAR: MSR.LSTAR,
  CSTAR: 0xc0000083,
  SFMASK: MSR.SFMASK,
  KERNEL_GS_BASE: 0xc0000102,
  TSC_AUX: 0xc0000103,
  SYSENTER_CS: 0x174,
  SYSENTER_ESP: 0x175,
  SYSENTER_EIP: 0x176,
  PAT: 0x277,
};
const DR7_ENABLES = 0xffn;

const hex = (v: bigint | number): string => `0x${v.toString(16)}`;

function parseHex(rec: StateRecord, field: string, who: string): bigint {
  const v = rec[field];
  if (typeof v !== 'string' || !/^0x[0-9a-f]+$/.test(v)) throw new StateError(who, field, `expected a hex string, got ${JSON.stringify(v)}`);
  const n = BigInt(v);
  if (n >= 1n << 64n) throw new StateError(who, field, `${v} does not fit in 64 bits`);
  return n;
}

function bytesField(rec: StateRecord, field: string, who: string, length: number): Uint8Array {
  const v = rec[field];
  if (!(v instanceof Uint8Array) || v.length !== length) throw new StateError(who, field, `expected ${length} bytes`);
  return v;
}

/** Reads the state of the context loaded in `engine`. */
export function capturePortable(engine: UnicornEngine): StateRecord {
  const L = contextLayout();
  const blob = engine.saveContext();
  const dv = new DataView(blob.buffer);
  const regs: Record<string, StateValue> = {};
  for (const r of GPRS) regs[r] = hex(engine.readReg(REG[r]));
  regs['RIP'] = hex(engine.readReg(REG.RIP));
  regs['RFLAGS'] = hex(engine.readReg(REG.RFLAGS));
  const segments: Record<string, StateValue> = {};
  SEGMENTS.forEach((name) => {
    const o = L.segs + SEG[name] * SEG_CACHE_SIZE;
    segments[name] = { selector: dv.getUint32(o, true) & 0xffff, base: hex(dv.getBigUint64(o + 8, true)), limit: dv.getUint32(o + 16, true), flags: dv.getUint32(o + 20, true) };
  });
  const gdtr = engine.readMmr(REG.GDTR);
  const idtr = engine.readMmr(REG.IDTR);
  const msrs: Record<string, StateValue> = {};
  for (const [name, index] of Object.entries(SAVED_MSRS)) msrs[name] = hex(engine.readMsr(index));
  msrs['FS_BASE'] = hex(engine.readReg(REG.FS_BASE));
  msrs['GS_BASE'] = hex(engine.readReg(REG.GS_BASE));
  const fpu: Record<string, StateValue> = {
    FPCW: engine.readReg32(X.FPCW),
    FPSW: engine.readReg32(X.FPSW),
    FPTAG: engine.readReg32(X.FPTAG),
    FIP: hex(engine.readReg(X.FIP)),
    FCS: engine.readReg32(X.FCS),
    FDP: hex(engine.readReg(X.FDP)),
    FDS: engine.readReg32(X.FDS),
    FOP: engine.readReg32(X.FOP),
    MXCSR: engine.readReg32(X.MXCSR),
    st: Array.from({ length: 8 }, (_, i) => engine.readRegBytes(X.ST0 + i, 10)),
    xmm: Array.from({ length: 16 }, (_, i) => engine.readRegBytes(X.XMM0 + i, 16)),
  };
  return {
    version: PORTABLE_CPU_VERSION,
    regs,
    segments,
    gdtr: { base: hex(gdtr.base), limit: gdtr.limit },
    idtr: { base: hex(idtr.base), limit: idtr.limit },
    // CR8 (the TPR) lives in the LAPIC model, saved with it; Unicorn 2.1 cannot read it.
    cr: { CR0: hex(engine.readReg(REG.CR0)), CR2: hex(engine.readReg(REG.CR2)), CR3: hex(engine.readReg(REG.CR3)), CR4: hex(engine.readReg(REG.CR4)) },
    dr: Array.from({ length: 8 }, (_, i) => (i === 4 || i === 5 ? '0x0' : hex(engine.readReg(X.DR0 + i)))),
    msrs,
    fpu,
    hflags: dv.getUint32(L.hflags, true),
    hflags2: dv.getUint32(L.hflags2, true),
  };
}

/**
 * Loads `rec` into the context in `engine` (which should hold a reset
 * context): control registers first (they set the mode), then everything
 * else, then the segment caches and hflags as recorded.
 */
export function applyPortable(engine: UnicornEngine, rec: StateRecord, who: string): void {
  if (rec['version'] !== PORTABLE_CPU_VERSION) throw new StateError(who, 'portable.version', `expected ${PORTABLE_CPU_VERSION}, got ${JSON.stringify(rec['version'])}`);
  const w = `${who}.portable`;
  const regs = stateRecord(rec, 'regs', w);
  const segments = stateRecord(rec, 'segments', w);
  const cr = stateRecord(rec, 'cr', w);
  const msrs = stateRecord(rec, 'msrs', w);
  const fpu = stateRecord(rec, 'fpu', w);
  const num = (r: StateRecord, f: string, where: string): number => {
    const v = r[f];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 0xffff_ffff) throw new StateError(where, f, `expected a 32-bit integer, got ${JSON.stringify(v)}`);
    return v;
  };
  // Validate everything before the first write: a bad record changes nothing.
  const values = {
    gprs: GPRS.map((r) => parseHex(regs, r, `${w}.regs`)),
    rip: parseHex(regs, 'RIP', `${w}.regs`),
    rflags: parseHex(regs, 'RFLAGS', `${w}.regs`),
    cr: ['CR0', 'CR2', 'CR3', 'CR4'].map((c) => parseHex(cr, c, `${w}.cr`)),
    msrs: Object.keys(SAVED_MSRS).map((m) => [SAVED_MSRS[m]!, parseHex(msrs, m, `${w}.msrs`)] as const),
    fsBase: parseHex(msrs, 'FS_BASE', `${w}.msrs`),
    gsBase: parseHex(msrs, 'GS_BASE', `${w}.msrs`),
    segs: SEGMENTS.map((name) => {
      const s = stateRecord(segments, name, `${w}.segments`);
      const where = `${w}.segments.${name}`;
      return { index: SEG[name], selector: num(s, 'selector', where), base: parseHex(s, 'base', where), limit: num(s, 'limit', where), flags: num(s, 'flags', where) };
    }),
    gdtr: stateRecord(rec, 'gdtr', w),
    idtr: stateRecord(rec, 'idtr', w),
    hflags: num(rec, 'hflags', w),
    hflags2: num(rec, 'hflags2', w),
    st: fpu['st'],
    xmm: fpu['xmm'],
    dr: rec['dr'],
  };
  const list = (v: StateValue | undefined, n: number, where: string, field: string): StateValue[] => {
    if (!Array.isArray(v) || v.length !== n) throw new StateError(where, field, `expected ${n} entries`);
    return v;
  };
  const st = list(values.st, 8, `${w}.fpu`, 'st').map((v, i) => bytesField({ v }, 'v', `${w}.fpu.st[${i}]`, 10));
  const xmm = list(values.xmm, 16, `${w}.fpu`, 'xmm').map((v, i) => bytesField({ v }, 'v', `${w}.fpu.xmm[${i}]`, 16));
  const dr = list(values.dr, 8, w, 'dr').map((v, i) => parseHex({ v }, 'v', `${w}.dr[${i}]`));
  const gdtr = { base: parseHex(values.gdtr, 'base', `${w}.gdtr`), limit: num(values.gdtr, 'limit', `${w}.gdtr`) };
  const idtr = { base: parseHex(values.idtr, 'base', `${w}.idtr`), limit: num(values.idtr, 'limit', `${w}.idtr`) };
  const fpuNums = ['FPCW', 'FPSW', 'FPTAG', 'FCS', 'FDS', 'FOP', 'MXCSR'].map((f) => num(fpu, f, `${w}.fpu`));
  const fip = parseHex(fpu, 'FIP', `${w}.fpu`);
  const fdp = parseHex(fpu, 'FDP', `${w}.fpu`);

  // Mode first: EFER (LME), CR4 (PAE), CR3, then CR0 (PG with LME sets LMA). CR2's write also
  // sets CR3 in Unicorn 2.1.1 (fixed in 2.1.4), so CR3 is written after it.
  for (const [index, value] of values.msrs) engine.writeMsr(index, value);
  const [cr0, cr2, cr3, cr4] = values.cr as [bigint, bigint, bigint, bigint];
  engine.writeReg(REG.CR4, cr4);
  engine.writeReg(REG.CR2, cr2);
  engine.writeReg(REG.CR3, cr3);
  engine.writeReg(REG.CR0, cr0);
  values.gprs.forEach((v, i) => engine.writeReg(REG[GPRS[i]!], v));
  engine.writeReg(REG.RFLAGS, values.rflags);
  engine.writeMmr(REG.GDTR, { selector: 0, base: gdtr.base, limit: gdtr.limit, flags: 0 });
  engine.writeMmr(REG.IDTR, { selector: 0, base: idtr.base, limit: idtr.limit, flags: 0 });
  for (const i of [0, 1, 2, 3, 6]) engine.writeReg(X.DR0 + i, dr[i]!);
  // Enabled DR7 breakpoints crash Unicorn (cpu_breakpoint_insert): only a disarmed DR7 reaches the engine.
  if ((dr[7]! & DR7_ENABLES) === 0n) engine.writeReg(X.DR0 + 7, dr[7]!);
  const [fpcw, fpsw, fptag, fcs, fds, fop, mxcsr] = fpuNums as [number, number, number, number, number, number, number];
  engine.writeReg(X.FPCW, fpcw);
  engine.writeReg(X.FPSW, fpsw);
  engine.writeReg(X.FPTAG, fptag);
  engine.writeReg(X.FIP, fip);
  engine.writeReg(X.FCS, fcs);
  engine.writeReg(X.FDP, fdp);
  engine.writeReg(X.FDS, fds);
  engine.writeReg(X.FOP, fop);
  engine.writeReg(X.MXCSR, mxcsr);
  st.forEach((b, i) => engine.writeRegBytes(X.ST0 + i, b));
  xmm.forEach((b, i) => engine.writeRegBytes(X.XMM0 + i, b));

  // Segment caches, RIP and hflags straight into the context: the API would reload them from
  // the descriptor tables, and the hidden parts may differ from what the tables say now.
  const L = contextLayout();
  const blob = engine.saveContext();
  const dv = new DataView(blob.buffer);
  for (const s of values.segs) {
    const o = L.segs + s.index * SEG_CACHE_SIZE;
    dv.setUint32(o, s.selector, true);
    dv.setBigUint64(o + 8, s.base, true);
    dv.setUint32(o + 16, s.limit, true);
    dv.setUint32(o + 20, s.flags, true);
  }
  dv.setBigUint64(L.regs + 16 * 8, values.rip, true);
  dv.setUint32(L.hflags, values.hflags, true);
  dv.setUint32(L.hflags2, values.hflags2, true);
  engine.restoreContext(blob);
  engine.writeReg(REG.FS_BASE, values.fsBase);
  engine.writeReg(REG.GS_BASE, values.gsBase);
}
