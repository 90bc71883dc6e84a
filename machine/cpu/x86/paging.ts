/**
 * The x86 page walker: 32-bit, PAE and 4-level paging, written against raw
 * physical memory. The CPU's TLB-fill hook, the hypervisor's guest walk, the
 * CLI `translate` command and the TUI page-walk pane all use this one walker.
 */
import { CR0, CR4, EFER } from './registers.js';

export interface PhysicalReader {
  readU32(paddr: number): number;
  readU64(paddr: number): bigint;
  writeU32(paddr: number, value: number): void;
  writeU64(paddr: number, value: bigint): void;
}

export interface PagingControl {
  cr0: bigint;
  cr3: bigint;
  cr4: bigint;
  efer: bigint;
}

export type Access = 'read' | 'write' | 'fetch';

export interface WalkStep {
  /** PML4, PDPT, PD, PT (4-level/PAE) or PD, PT (32-bit). */
  level: 'PML4' | 'PDPT' | 'PD' | 'PT';
  index: number;
  entryAddr: number;
  entry: bigint;
  flags: EntryFlags;
}

export interface EntryFlags {
  P: boolean;
  RW: boolean;
  US: boolean;
  PWT: boolean;
  PCD: boolean;
  A: boolean;
  D: boolean;
  PS: boolean;
  G: boolean;
  NX: boolean;
}

export type PagingFormat = 'none' | '32-bit' | 'pae' | '4-level';

export interface WalkOk {
  ok: true;
  format: PagingFormat;
  paddr: bigint;
  pageBase: bigint;
  pageSize: number;
  writable: boolean;
  user: boolean;
  executable: boolean;
  dirty: boolean;
  steps: WalkStep[];
}

export interface WalkFault {
  ok: false;
  format: PagingFormat;
  /** The #PF error code the CPU pushes. */
  errorCode: number;
  /** Index in `steps` of the level that faulted. */
  faultLevel: number;
  reason: string;
  steps: WalkStep[];
}

export type WalkResult = WalkOk | WalkFault;

export interface WalkOptions {
  access: Access;
  /** CPL 3 access. */
  user: boolean;
  /** Set accessed/dirty bits as the CPU does. Off for inspection. */
  setAccessedDirty: boolean;
}

export const PF = { P: 1, W: 2, U: 4, RSVD: 8, I: 16 } as const;

const BIT = (n: number): bigint => 1n << BigInt(n);
const ADDR_MASK_4L = 0x000f_ffff_ffff_f000n; // 52-bit physical addresses
const ACCESSED = BIT(5);
const DIRTY = BIT(6);

export function decodeEntry(e: bigint, nxe: boolean): EntryFlags {
  return {
    P: (e & 1n) !== 0n,
    RW: (e & 2n) !== 0n,
    US: (e & 4n) !== 0n,
    PWT: (e & 8n) !== 0n,
    PCD: (e & 16n) !== 0n,
    A: (e & ACCESSED) !== 0n,
    D: (e & DIRTY) !== 0n,
    PS: (e & BIT(7)) !== 0n,
    G: (e & BIT(8)) !== 0n,
    NX: nxe && (e & BIT(63)) !== 0n,
  };
}

export function pagingFormat(c: PagingControl): PagingFormat {
  if ((c.cr0 & CR0.PG) === 0n) return 'none';
  if ((c.cr4 & CR4.PAE) === 0n) return '32-bit';
  if ((c.efer & EFER.LMA) !== 0n) return '4-level';
  return 'pae';
}

/** Canonical check for 48-bit virtual addresses in 4-level paging. */
export function isCanonical(vaddr: bigint): boolean {
  const top = vaddr >> 47n;
  return top === 0n || top === 0x1ffffn;
}

export function walk(mem: PhysicalReader, c: PagingControl, vaddr: bigint, opt: WalkOptions): WalkResult {
  const format = pagingFormat(c);
  if (format === 'none') {
    return { ok: true, format, paddr: vaddr & 0xffff_ffffn, pageBase: vaddr & ~0xfffn & 0xffff_ffffn, pageSize: 4096, writable: true, user: true, executable: true, dirty: true, steps: [] };
  }
  const nxe = (c.efer & EFER.NXE) !== 0n && format !== '32-bit';
  const wp = (c.cr0 & CR0.WP) !== 0n;
  const steps: WalkStep[] = [];
  let writable = true;
  let user = true;
  let executable = true;
  const baseCode = (opt.access === 'write' ? PF.W : 0) | (opt.user ? PF.U : 0) | (opt.access === 'fetch' && nxe ? PF.I : 0);

  type Level = { name: WalkStep['level']; shift: number; bits: number; leafAllowed: boolean };
  let levels: Level[];
  let table: bigint;
  let entrySize: 4 | 8;
  if (format === '4-level') {
    levels = [
      { name: 'PML4', shift: 39, bits: 9, leafAllowed: false },
      { name: 'PDPT', shift: 30, bits: 9, leafAllowed: true },
      { name: 'PD', shift: 21, bits: 9, leafAllowed: true },
      { name: 'PT', shift: 12, bits: 9, leafAllowed: true },
    ];
    table = c.cr3 & ADDR_MASK_4L;
    entrySize = 8;
  } else if (format === 'pae') {
    levels = [
      { name: 'PDPT', shift: 30, bits: 2, leafAllowed: false },
      { name: 'PD', shift: 21, bits: 9, leafAllowed: true },
      { name: 'PT', shift: 12, bits: 9, leafAllowed: true },
    ];
    table = c.cr3 & 0xffff_ffe0n;
    entrySize = 8;
    vaddr &= 0xffff_ffffn;
  } else {
    levels = [
      { name: 'PD', shift: 22, bits: 10, leafAllowed: (c.cr4 & CR4.PSE) !== 0n },
      { name: 'PT', shift: 12, bits: 10, leafAllowed: true },
    ];
    table = c.cr3 & 0xffff_f000n;
    entrySize = 4;
    vaddr &= 0xffff_ffffn;
  }

  if (format === '4-level' && !isCanonical(vaddr)) {
    // Non-canonical addresses raise #GP, not #PF; report it as a fault at level 0.
    return { ok: false, format, errorCode: 0, faultLevel: 0, reason: 'non-canonical address (#GP)', steps };
  }

  const fault = (i: number, code: number, reason: string): WalkFault => ({ ok: false, format, errorCode: baseCode | code, faultLevel: i, reason, steps });

  for (let i = 0; i < levels.length; i++) {
    const lv = levels[i]!;
    const index = Number((vaddr >> BigInt(lv.shift)) & ((1n << BigInt(lv.bits)) - 1n));
    const entryAddr = Number(table) + index * entrySize;
    const entry = entrySize === 8 ? mem.readU64(entryAddr) : BigInt(mem.readU32(entryAddr) >>> 0);
    const flags = decodeEntry(entry, nxe);
    steps.push({ level: lv.name, index, entryAddr, entry, flags });
    if (!flags.P) return fault(i, 0, `${lv.name} entry not present`);
    if (format === 'pae' && lv.name === 'PDPT') {
      // PAE PDPTEs have no RW/US/NX bits; only P and the address.
      table = entry & ADDR_MASK_4L;
      continue;
    }
    if (entrySize === 8 && !nxe && (entry & BIT(63)) !== 0n) return fault(i, PF.P | PF.RSVD, `${lv.name} entry has NX set while EFER.NXE=0 (reserved bit)`);
    if (!flags.RW) writable = false;
    if (!flags.US) user = false;
    if (flags.NX) executable = false;
    const isLeaf = lv.name === 'PT' || (flags.PS && lv.leafAllowed);
    if (flags.PS && !lv.leafAllowed && lv.name !== 'PT') {
      if (format === '32-bit') {
        // PSE off: PS is ignored in a 32-bit PDE.
      } else {
        return fault(i, PF.P | PF.RSVD, `${lv.name} entry has PS set (reserved at this level)`);
      }
    }
    if (!isLeaf) {
      table = entrySize === 8 ? entry & ADDR_MASK_4L : entry & 0xffff_f000n;
      continue;
    }
    // Leaf reached: check permissions with the combined bits.
    if (opt.user && !user) return fault(i, PF.P, 'user access to a supervisor page');
    if (opt.access === 'write' && !writable && (opt.user || wp)) return fault(i, PF.P, 'write to a read-only page');
    if (opt.access === 'fetch' && !executable) return fault(i, PF.P, 'instruction fetch from a no-execute page');
    const pageSize = 1 << lv.shift;
    let pageBase: bigint;
    if (format === '32-bit' && lv.name === 'PD') {
      // 4 MiB page: bits 13..20 hold physical address bits 32..39 (PSE-36).
      pageBase = (entry & 0xffc0_0000n) | (((entry >> 13n) & 0xffn) << 32n);
    } else {
      pageBase = entry & ADDR_MASK_4L & ~(BigInt(pageSize) - 1n);
    }
    if (opt.setAccessedDirty) {
      for (let k = 0; k < steps.length; k++) {
        const s = steps[k]!;
        if (format === 'pae' && s.level === 'PDPT') continue;
        let v = s.entry | ACCESSED;
        if (k === steps.length - 1 && opt.access === 'write') v |= DIRTY;
        if (v !== s.entry) {
          if (entrySize === 8) mem.writeU64(s.entryAddr, v);
          else mem.writeU32(s.entryAddr, Number(v & 0xffff_ffffn));
          s.entry = v;
          s.flags = decodeEntry(v, nxe);
        }
      }
    }
    const offset = vaddr & (BigInt(pageSize) - 1n);
    return {
      ok: true,
      format,
      paddr: pageBase + offset,
      pageBase,
      pageSize,
      writable: writable || (!opt.user && !wp),
      user,
      executable,
      dirty: steps[steps.length - 1]!.flags.D,
      steps,
    };
  }
  return fault(levels.length - 1, 0, 'walk ended without a leaf');
}
