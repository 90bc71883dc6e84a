/**
 * The x86 page walker: 32-bit, PAE and 4-level paging, written against raw
 * physical memory. The CPU's TLB-fill hook, the hypervisor's guest walk, the
 * CLI `translate` command and the TUI page-walk pane all use this one walker.
 */
import { CR0, CR4, EFER } from './registers.js';
import { MAX_PHYS_ADDR_BITS } from './cpuid.js';

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
  /** A non-canonical address: the access raises #GP(0) (#SS for stack accesses), not #PF. */
  nonCanonical?: true;
}

export type WalkResult = WalkOk | WalkFault;

export interface WalkOptions {
  access: Access;
  /** CPL 3 access. */
  user: boolean;
  /** Set accessed/dirty bits as the CPU does. Off for inspection. */
  setAccessedDirty: boolean;
  /** Keep the per-level records (default true); hot paths turn it off. */
  recordSteps?: boolean;
}

export const PF = { P: 1, W: 2, U: 4, RSVD: 8, I: 16 } as const;

const BIT = (n: number): bigint => 1n << BigInt(n);
const ADDR_MASK_4L = 0x000f_ffff_ffff_f000n; // 52-bit physical addresses
const ACCESSED = BIT(5);
const DIRTY = BIT(6);
const ACCESSED_BIT = 0x20;
const DIRTY_BIT = 0x40;

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

interface Level {
  name: WalkStep['level'];
  shift: number;
  bits: number;
  leafAllowed: boolean;
}

const LEVELS_4L: readonly Level[] = [
  { name: 'PML4', shift: 39, bits: 9, leafAllowed: false },
  { name: 'PDPT', shift: 30, bits: 9, leafAllowed: true },
  { name: 'PD', shift: 21, bits: 9, leafAllowed: true },
  { name: 'PT', shift: 12, bits: 9, leafAllowed: true },
];
const LEVELS_PAE: readonly Level[] = [
  { name: 'PDPT', shift: 30, bits: 2, leafAllowed: false },
  { name: 'PD', shift: 21, bits: 9, leafAllowed: true },
  { name: 'PT', shift: 12, bits: 9, leafAllowed: true },
];
const LEVELS_32: readonly Level[] = [
  { name: 'PD', shift: 22, bits: 10, leafAllowed: false },
  { name: 'PT', shift: 12, bits: 10, leafAllowed: true },
];
const LEVELS_32_PSE: readonly Level[] = [
  { name: 'PD', shift: 22, bits: 10, leafAllowed: true },
  { name: 'PT', shift: 12, bits: 10, leafAllowed: true },
];

function walkFault(format: PagingFormat, steps: WalkStep[], faultLevel: number, errorCode: number, reason: string): WalkFault {
  return { ok: false, format, errorCode, faultLevel, reason, steps };
}

const TWO32 = 4294967296;

/** Bits of an 8-byte entry's high dword that address memory beyond MAXPHYADDR (up to bit 51): reserved. */
const RSVD_HI = (0xfffff << (MAX_PHYS_ADDR_BITS - 32)) & 0xfffff;
/** Low-dword address bits a 2 MiB / 1 GiB leaf must leave zero (below its page size, above the PAT bit 12). */
const RSVD_LO_LARGE: Partial<Record<WalkStep['level'], number>> = { PD: 0x001f_e000, PDPT: 0x3fff_e000 };

/** Table or page address bits 12..51 of a 64-bit entry given as two dwords (exact as a Number). */
const addr64 = (lo: number, hi: number): number => (hi & 0xfffff) * TWO32 + ((lo & 0xfffff000) >>> 0);

/**
 * Walks the guest's tables for `vaddr`. Entries are handled as two 32-bit
 * halves in Number arithmetic (this runs on every TLB miss and every event
 * delivery); BigInt appears only in the result. `recordSteps: false` skips the
 * per-level records that inspection needs.
 */
export function walk(mem: PhysicalReader, c: PagingControl, vaddr: bigint, opt: WalkOptions): WalkResult {
  const format = pagingFormat(c);
  if (format === 'none') {
    return { ok: true, format, paddr: vaddr & 0xffff_ffffn, pageBase: vaddr & ~0xfffn & 0xffff_ffffn, pageSize: 4096, writable: true, user: true, executable: true, dirty: true, steps: [] };
  }
  const record = opt.recordSteps !== false;
  const nxe = (c.efer & EFER.NXE) !== 0n && format !== '32-bit';
  const wp = (c.cr0 & CR0.WP) !== 0n;
  const steps: WalkStep[] = [];
  let writable = true;
  let user = true;
  let executable = true;
  const baseCode = (opt.access === 'write' ? PF.W : 0) | (opt.user ? PF.U : 0) | (opt.access === 'fetch' && nxe ? PF.I : 0);

  let levels: readonly Level[];
  let table: number;
  let entrySize: 4 | 8;
  if (format === '4-level') {
    if (!isCanonical(vaddr)) {
      // Non-canonical addresses raise #GP, not #PF; report it as a fault at level 0.
      return { ok: false, format, errorCode: 0, faultLevel: 0, reason: 'non-canonical address (#GP)', steps, nonCanonical: true };
    }
    levels = LEVELS_4L;
    table = Number(c.cr3 & ADDR_MASK_4L);
    entrySize = 8;
  } else if (format === 'pae') {
    levels = LEVELS_PAE;
    table = Number(c.cr3 & 0xffff_ffe0n);
    entrySize = 8;
  } else {
    levels = (c.cr4 & CR4.PSE) !== 0n ? LEVELS_32_PSE : LEVELS_32;
    table = Number(c.cr3 & 0xffff_f000n);
    entrySize = 4;
  }
  const vlo = Number(vaddr & 0xffff_ffffn);
  const vhi = entrySize === 8 && format === '4-level' ? Number((vaddr >> 32n) & 0xffffn) : 0;
  // Entry address and low dword per level, for the accessed/dirty update.
  const addrs: number[] = [];
  const lows: number[] = [];

  for (let i = 0; i < levels.length; i++) {
    const lv = levels[i]!;
    // Index bits of vaddr for this level, from the two halves.
    const index = lv.shift >= 32 ? (vhi >>> (lv.shift - 32)) & ((1 << lv.bits) - 1) : lv.shift + lv.bits > 32 ? ((vlo >>> lv.shift) | (vhi << (32 - lv.shift))) & ((1 << lv.bits) - 1) : (vlo >>> lv.shift) & ((1 << lv.bits) - 1);
    const entryAddr = table + index * entrySize;
    // One 8-byte read per entry, as the hardware walker does.
    let lo: number;
    let hi = 0;
    if (entrySize === 8) {
      const e = mem.readU64(entryAddr);
      lo = Number(e & 0xffff_ffffn);
      hi = Number(e >> 32n);
    } else {
      lo = mem.readU32(entryAddr) >>> 0;
    }
    addrs.push(entryAddr);
    lows.push(lo);
    if (record) {
      const entry = (BigInt(hi) << 32n) | BigInt(lo);
      steps.push({ level: lv.name, index, entryAddr, entry, flags: decodeEntry(entry, nxe) });
    }
    if (!(lo & 1)) return walkFault(format, steps, i, baseCode, `${lv.name} entry not present`);
    // Address bits above MAXPHYADDR are reserved in every PAE / 4-level entry: #PF with RSVD, as QEMU gives.
    if (entrySize === 8 && hi & RSVD_HI) return walkFault(format, steps, i, baseCode | PF.P | PF.RSVD, `${lv.name} entry addresses memory above MAXPHYADDR (${MAX_PHYS_ADDR_BITS} bits; reserved bits set)`);
    if (format === 'pae' && lv.name === 'PDPT') {
      // PAE PDPTEs have no RW/US/NX bits; only P and the address.
      table = addr64(lo, hi);
      continue;
    }
    if (entrySize === 8 && !nxe && hi >>> 31) return walkFault(format, steps, i, baseCode | PF.P | PF.RSVD, `${lv.name} entry has NX set while EFER.NXE=0 (reserved bit)`);
    if (!(lo & 2)) writable = false;
    if (!(lo & 4)) user = false;
    if (nxe && hi >>> 31) executable = false;
    const ps = (lo & 0x80) !== 0;
    const isLeaf = lv.name === 'PT' || (ps && lv.leafAllowed);
    if (ps && !lv.leafAllowed && lv.name !== 'PT' && format !== '32-bit') {
      return walkFault(format, steps, i, baseCode | PF.P | PF.RSVD, `${lv.name} entry has PS set (reserved at this level)`);
    }
    if (isLeaf && entrySize === 8 && lo & (RSVD_LO_LARGE[lv.name] ?? 0) && lv.name !== 'PT') {
      return walkFault(format, steps, i, baseCode | PF.P | PF.RSVD, `${lv.name} large-page entry has reserved address bits set`);
    }
    if (!isLeaf) {
      table = entrySize === 8 ? addr64(lo, hi) : (lo & 0xfffff000) >>> 0;
      continue;
    }
    // Leaf reached: check permissions with the combined bits.
    if (opt.user && !user) return walkFault(format, steps, i, baseCode | PF.P, 'user access to a supervisor page');
    if (opt.access === 'write' && !writable && (opt.user || wp)) return walkFault(format, steps, i, baseCode | PF.P, 'write to a read-only page');
    if (opt.access === 'fetch' && !executable) return walkFault(format, steps, i, baseCode | PF.P, 'instruction fetch from a no-execute page');
    const pageSize = 2 ** lv.shift;
    const offsetMask = pageSize - 1;
    let pageBase: number;
    if (format === '32-bit' && lv.name === 'PD') {
      // 4 MiB page: bits 13..20 hold physical address bits 32..39 (PSE-36).
      pageBase = ((lo & 0xffc00000) >>> 0) + ((lo >>> 13) & 0xff) * TWO32;
    } else {
      const full = entrySize === 8 ? addr64(lo, hi) : (lo & 0xfffff000) >>> 0;
      pageBase = full - (full % pageSize);
    }
    let dirty = (lo & 0x40) !== 0;
    if (opt.setAccessedDirty) {
      for (let k = 0; k < addrs.length; k++) {
        if (format === 'pae' && k === 0) continue;
        let v = lows[k]! | ACCESSED_BIT;
        if (k === addrs.length - 1 && opt.access === 'write') v |= DIRTY_BIT;
        v >>>= 0;
        if (v !== lows[k]) {
          mem.writeU32(addrs[k]!, v);
          if (record) {
            const st = steps[k]!;
            st.entry = (st.entry & ~0xffff_ffffn) | BigInt(v);
            st.flags = decodeEntry(st.entry, nxe);
          }
        }
      }
      if (opt.access === 'write') dirty = true;
    }
    const offset = (vlo & offsetMask) >>> 0;
    return {
      ok: true,
      format,
      paddr: BigInt(pageBase + offset),
      pageBase: BigInt(pageBase),
      pageSize,
      writable: writable || (!opt.user && !wp),
      user,
      executable,
      dirty,
      steps,
    };
  }
  return walkFault(format, steps, levels.length - 1, baseCode, 'walk ended without a leaf');
}
