/**
 * The CPU view: one CPU's architectural state as plain JSON (hex strings,
 * decoded flag names). `buildCpuView` is pure over raw values so the decoders
 * are unit-tested without an engine; `cpuView` reads a live X86Cpu.
 */
import type { CpuRunState, X86Cpu } from '../cpu/x86-cpu.js';
import { REG } from '../cpu/unicorn/constants.js';
import { contextLayout, SEG, SEG_CACHE_SIZE } from '../cpu/x86/context-layout.js';
import { codeBits, cpuMode, decodeCr0, decodeCr4, decodeEfer, RFLAGS, type CpuMode } from '../cpu/x86/registers.js';
import { DESC, type SegCache } from '../cpu/x86/segments.js';
import { pagingFormat, type PagingFormat } from '../cpu/x86/paging.js';
import { hex16, hex32, hex64 } from './hex.js';

export const GPR_NAMES = ['RAX', 'RBX', 'RCX', 'RDX', 'RSI', 'RDI', 'RBP', 'RSP', 'R8', 'R9', 'R10', 'R11', 'R12', 'R13', 'R14', 'R15'] as const;
export type GprName = (typeof GPR_NAMES)[number];
export const SEGMENT_NAMES = ['ES', 'CS', 'SS', 'DS', 'FS', 'GS'] as const;
export type SegmentName = (typeof SEGMENT_NAMES)[number];

/** Everything the view is computed from: what an engine (or a test) provides. */
export interface CpuRawState {
  index: number;
  apicId: number;
  runState: CpuRunState;
  gprs: Record<GprName, bigint>;
  rip: bigint;
  rflags: number;
  /** ES, CS, SS, DS, FS, GS, LDT, TR, GDT, IDT (the context-blob order). */
  segs: readonly SegCache[];
  cr0: bigint;
  cr2: bigint;
  cr3: bigint;
  cr4: bigint;
  efer: bigint;
}

export interface RegisterView {
  name: string;
  value: string;
}

export interface BitsView {
  value: string;
  /** Names of the bits that are set. */
  set: string[];
}

export interface RflagsView extends BitsView {
  iopl: number;
}

export interface SegmentView {
  name: string;
  selector: string;
  base: string;
  limit: string;
  /** Raw descriptor attribute dword as the segment cache keeps it. */
  flags: string;
  /** e.g. "code64 DPL0 P", "data RW DPL0 P", "tss-busy P". */
  attributes: string;
}

export interface TableRegisterView {
  base: string;
  limit: string;
}

export interface ControlView {
  cr0: BitsView;
  cr2: string;
  cr3: string;
  cr4: BitsView;
  efer: BitsView;
  paging: PagingFormat;
}

export interface CpuView {
  index: number;
  apicId: number;
  state: CpuRunState;
  mode: CpuMode;
  /** Width the disassembler uses for the current code segment. */
  codeBits: 16 | 32 | 64;
  cpl: number;
  rip: string;
  /** CS.base + RIP outside long mode (32-bit wrap), RIP in long mode. */
  linearRip: string;
  rflags: RflagsView;
  gprs: RegisterView[];
  segments: SegmentView[];
  gdtr: TableRegisterView;
  idtr: TableRegisterView;
  ldtr: SegmentView;
  tr: SegmentView;
  control: ControlView;
}

export function rflagsView(v: number): RflagsView {
  const set = Object.entries(RFLAGS)
    .filter(([, bit]) => (v & bit) !== 0)
    .map(([n]) => n);
  return { value: hex32(v), set, iopl: (v >>> 12) & 3 };
}

export function bitsView(value: bigint, decode: (v: bigint) => string[]): BitsView {
  return { value: hex64(value), set: decode(value) };
}

const SYSTEM_TYPES: Record<number, string> = { 1: 'tss16', 2: 'ldt', 3: 'tss16-busy', 9: 'tss', 11: 'tss-busy', 12: 'call-gate', 14: 'int-gate', 15: 'trap-gate' };

/** Human-readable descriptor attributes: type, width, DPL, present. */
export function segmentAttributes(flags: number, mode: CpuMode): string {
  const present = (flags & DESC.P) !== 0;
  const dplText = `DPL${(flags >>> DESC.DPL_SHIFT) & 3}`;
  const parts: string[] = [];
  // A null selector loads an all-zero, not-present cache (DS/ES/FS/GS in long mode).
  if (mode !== 'real' && flags === 0) return 'unusable';
  if (mode === 'real') parts.push('real');
  else if ((flags & DESC.S) === 0) parts.push(SYSTEM_TYPES[(flags >>> 8) & 0xf] ?? `system-type${(flags >>> 8) & 0xf}`);
  else if (flags & DESC.CODE) {
    const width = flags & DESC.L ? 64 : flags & DESC.B ? 32 : 16;
    parts.push(`code${width}`);
    if (flags & (1 << 10)) parts.push('conforming');
    if (!(flags & DESC.W)) parts.push('XO');
  } else {
    parts.push(flags & DESC.W ? 'data RW' : 'data RO');
    if (flags & (1 << 10)) parts.push('expand-down');
  }
  if (mode !== 'real') parts.push(dplText);
  parts.push(present ? 'P' : 'NP');
  return parts.join(' ');
}

function segmentView(name: string, s: SegCache, mode: CpuMode): SegmentView {
  return { name, selector: hex16(s.selector), base: hex64(s.base), limit: hex32(s.limit), flags: hex32(s.flags), attributes: segmentAttributes(s.flags, mode) };
}

/** Linear address of RIP: long mode ignores CS.base; other modes add it and wrap at 4 GiB. */
export function linearRip(mode: CpuMode, csBase: bigint, rip: bigint): bigint {
  return mode === 'long' ? rip : (csBase + rip) & 0xffff_ffffn;
}

export function buildCpuView(raw: CpuRawState): CpuView {
  const seg = (i: number): SegCache => raw.segs[i] ?? { selector: 0, base: 0n, limit: 0, flags: 0 };
  const cs = seg(SEG.CS);
  const mode = cpuMode(raw.cr0, raw.efer, cs.flags);
  const cpl = mode === 'real' ? 0 : cs.selector & 3;
  return {
    index: raw.index,
    apicId: raw.apicId,
    state: raw.runState,
    mode,
    codeBits: codeBits(mode, cs.flags),
    cpl,
    rip: hex64(raw.rip),
    linearRip: hex64(linearRip(mode, cs.base, raw.rip)),
    rflags: rflagsView(raw.rflags),
    gprs: GPR_NAMES.map((name) => ({ name, value: hex64(raw.gprs[name]) })),
    segments: SEGMENT_NAMES.map((name, i) => segmentView(name, seg(i), mode)),
    gdtr: { base: hex64(seg(SEG.GDT).base), limit: hex16(seg(SEG.GDT).limit) },
    idtr: { base: hex64(seg(SEG.IDT).base), limit: hex16(seg(SEG.IDT).limit) },
    ldtr: segmentView('LDTR', seg(SEG.LDT), mode === 'real' ? 'protected' : mode),
    tr: segmentView('TR', seg(SEG.TR), mode === 'real' ? 'protected' : mode),
    control: {
      cr0: bitsView(raw.cr0, decodeCr0),
      cr2: hex64(raw.cr2),
      cr3: hex64(raw.cr3),
      cr4: bitsView(raw.cr4, decodeCr4),
      efer: bitsView(raw.efer, decodeEfer),
      paging: pagingFormat({ cr0: raw.cr0, cr3: raw.cr3, cr4: raw.cr4, efer: raw.efer }),
    },
  };
}

/** The ten segment caches (ES..GS, LDT, TR, GDT, IDT) from the engine's context blob. */
export function readSegmentCaches(cpu: X86Cpu): SegCache[] {
  const blob = cpu.engine.saveContext();
  const dv = new DataView(blob.buffer, blob.byteOffset, blob.byteLength);
  const L = contextLayout();
  const out: SegCache[] = [];
  for (let i = 0; i < 10; i++) {
    const o = L.segs + i * SEG_CACHE_SIZE;
    out.push({ selector: dv.getUint32(o, true) & 0xffff, base: dv.getBigUint64(o + 8, true), limit: dv.getUint32(o + 16, true), flags: dv.getUint32(o + 20, true) });
  }
  return out;
}

export function readCpuRawState(cpu: X86Cpu): CpuRawState {
  const e = cpu.engine;
  const ctl = cpu.readControl();
  const gprs = Object.fromEntries(GPR_NAMES.map((n) => [n, e.readReg(REG[n])])) as Record<GprName, bigint>;
  return {
    index: cpu.index,
    apicId: cpu.apicId,
    runState: cpu.state,
    gprs,
    rip: cpu.readRip(),
    rflags: cpu.readRflags(),
    segs: readSegmentCaches(cpu),
    cr0: ctl.cr0,
    cr2: e.readReg(REG.CR2),
    cr3: ctl.cr3,
    cr4: ctl.cr4,
    efer: ctl.efer,
  };
}

export function cpuView(cpu: X86Cpu): CpuView {
  return buildCpuView(readCpuRawState(cpu));
}

/** CPU mode and current linear RIP without building the whole view (debugger hot paths). */
export function cpuLocation(cpu: X86Cpu): { mode: CpuMode; linearRip: bigint; bits: 16 | 32 | 64 } {
  const segs = readSegmentCaches(cpu);
  const ctl = cpu.readControl();
  const cs = segs[SEG.CS]!;
  const mode = cpuMode(ctl.cr0, ctl.efer, cs.flags);
  return { mode, linearRip: linearRip(mode, cs.base, cpu.readRip()), bits: codeBits(mode, cs.flags) };
}
