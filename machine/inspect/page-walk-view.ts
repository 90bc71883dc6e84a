/**
 * Page-walk view: every level of the translation of one virtual address,
 * with entry address, raw entry, decoded flags, and the fault at the level
 * where it happens. Built on the CPU's own walker (machine/cpu/x86/paging.ts)
 * without setting accessed/dirty bits, so looking never changes the guest.
 */
import { pagingFormat, walk, type Access, type PagingControl, type PagingFormat, type PhysicalReader, type WalkStep } from '../cpu/x86/paging.js';
import type { X86Cpu } from '../cpu/x86-cpu.js';
import { hex, hex64 } from './hex.js';

export interface PageFlagsView {
  P: boolean;
  RW: boolean;
  US: boolean;
  A: boolean;
  D: boolean;
  PS: boolean;
  NX: boolean;
}

export interface PageWalkLevelView {
  level: WalkStep['level'];
  index: number;
  entryAddress: string;
  entry: string;
  flags: PageFlagsView;
  /** "P RW us A d ps nx": upper case set, lower case clear. */
  flagText: string;
  /** Next table (non-leaf), or the mapped page (leaf). */
  next: string | null;
  leaf: boolean;
  /** Why the walk stopped here, when it did. */
  fault?: string;
}

/** EPT (guest-physical to host-physical) part of a nested walk, for hypervisor guests. */
export interface EptWalkView {
  guestPhysical: string;
  levels: { level: string; index: number; entryAddress: string; entry: string; flagText: string }[];
  hostPhysical: string | null;
  fault?: string;
}

export type PageWalkResultView =
  | { ok: true; physical: string; pageBase: string; pageSize: number; writable: boolean; user: boolean; executable: boolean }
  | { ok: false; reason: string; errorCode: string; faultLevel: WalkStep['level'] | null };

export interface PageWalkView {
  virtual: string;
  access: Access;
  user: boolean;
  format: PagingFormat;
  cr3: string;
  levels: PageWalkLevelView[];
  result: PageWalkResultView;
  /** Hypervisor guests: the EPT walk of the final guest-physical address (null on the bare machine). */
  ept: EptWalkView | null;
}

export interface PageWalkOptions {
  access?: Access;
  user?: boolean;
}

const LEVELS: Record<Exclude<PagingFormat, 'none'>, WalkStep['level'][]> = {
  '4-level': ['PML4', 'PDPT', 'PD', 'PT'],
  pae: ['PDPT', 'PD', 'PT'],
  '32-bit': ['PD', 'PT'],
};

const FLAG_ORDER: (keyof PageFlagsView)[] = ['P', 'RW', 'US', 'A', 'D', 'PS', 'NX'];

export function flagText(f: PageFlagsView): string {
  return FLAG_ORDER.map((k) => (f[k] ? k : k.toLowerCase())).join(' ');
}

function levelView(step: WalkStep, format: PagingFormat, leaf: boolean, pageBase: bigint | null): PageWalkLevelView {
  const flags: PageFlagsView = { P: step.flags.P, RW: step.flags.RW, US: step.flags.US, A: step.flags.A, D: step.flags.D, PS: step.flags.PS, NX: step.flags.NX };
  const tableMask = format === '32-bit' ? 0xffff_f000n : 0x000f_ffff_ffff_f000n;
  const next = !step.flags.P ? null : leaf ? (pageBase === null ? null : hex64(pageBase)) : hex64(step.entry & tableMask);
  return { level: step.level, index: step.index, entryAddress: hex64(step.entryAddr), entry: format === '32-bit' ? hex(step.entry, 8) : hex64(step.entry), flags, flagText: flagText(flags), next, leaf };
}

/** Records the physical addresses a walk reads, so a failed read can be pinned to its level. */
class RecordingReader implements PhysicalReader {
  reads = 0;
  constructor(private readonly inner: PhysicalReader) {}
  readU32(p: number): number {
    this.reads++;
    return this.inner.readU32(p);
  }
  readU64(p: number): bigint {
    this.reads++;
    return this.inner.readU64(p);
  }
  writeU32(): void {
    throw new Error('the inspection walk never writes');
  }
  writeU64(): void {
    throw new Error('the inspection walk never writes');
  }
}

/** Pure: the walk view from raw memory and control registers (unit-tested with hand-built tables). */
export function pageWalkViewFrom(memory: PhysicalReader, control: PagingControl, vaddr: bigint, opts: PageWalkOptions = {}): PageWalkView {
  const access = opts.access ?? 'read';
  const user = opts.user ?? false;
  const base = { virtual: hex64(vaddr), access, user, cr3: hex64(control.cr3), ept: null };
  const reader = new RecordingReader(memory);
  let r: ReturnType<typeof walk>;
  try {
    r = walk(reader, control, vaddr, { access, user, setAccessedDirty: false });
  } catch (e) {
    // A table pointer into nothing (bad CR3 or entry): the read at this level failed.
    const format = pagingFormat(control);
    const level = format === 'none' ? null : (LEVELS[format][Math.max(0, reader.reads - 1)] ?? null);
    return { ...base, format, levels: [], result: { ok: false, reason: `page-table read failed: ${(e as Error).message}`, errorCode: hex(0), faultLevel: level } };
  }
  if (r.ok) {
    const levels = r.steps.map((s, i) => levelView(s, r.format, i === r.steps.length - 1, i === r.steps.length - 1 ? r.pageBase : null));
    return {
      ...base,
      format: r.format,
      levels,
      result: { ok: true, physical: hex64(r.paddr), pageBase: hex64(r.pageBase), pageSize: r.pageSize, writable: r.writable, user: r.user, executable: r.executable },
    };
  }
  const levels = r.steps.map((s, i) => {
    const v = levelView(s, r.format, false, null);
    if (i === r.faultLevel) v.fault = r.reason;
    return v;
  });
  const faultLevel = r.steps[r.faultLevel]?.level ?? null;
  return { ...base, format: r.format, levels, result: { ok: false, reason: r.reason, errorCode: hex(r.errorCode), faultLevel } };
}

/**
 * The walk for `vaddr` (a linear address) with the CPU's current CR0/CR3/CR4/EFER.
 * For a hypervisor guest the levels' addresses are guest-physical, and `ept`
 * carries the second-level walk of the final guest-physical address.
 */
export function pageWalkView(cpu: X86Cpu, vaddr: bigint, opts: PageWalkOptions = {}): PageWalkView {
  const view = pageWalkViewFrom(cpu.memory, cpu.readControl(), vaddr, opts);
  if (!view.result.ok) return view;
  const gpa = BigInt(view.result.physical);
  const ept = cpu.inspectSecondLevel(gpa, view.access);
  if (!ept) return view;
  return {
    ...view,
    ept: {
      guestPhysical: hex64(gpa),
      levels: ept.steps.map((s) => ({ level: s.level, index: s.index, entryAddress: hex64(s.entryAddr), entry: hex64(s.entry), flagText: s.flags })),
      hostPhysical: ept.hpa === null ? null : hex64(ept.hpa),
      ...(ept.fault ? { fault: ept.fault } : {}),
    },
  };
}
