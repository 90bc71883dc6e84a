/**
 * Physical to linear: every linear address that currently maps a physical
 * address, found by enumerating the present entries of the page tables.
 * Physical breakpoints use it to know which linear addresses to hook.
 * Bounded (entries visited, aliases returned) so a huge address space
 * cannot stall the UI.
 */
import { pagingFormat, type PagingControl, type PhysicalReader } from '../cpu/x86/paging.js';

export interface ReverseMapOptions {
  /** Stop after this many aliases (default 16). */
  limit?: number;
  /** Stop after visiting this many entries (default 1 << 20). */
  maxEntries?: number;
}

const ADDR_4L = 0x000f_ffff_ffff_f000n;

/** Sign-extends bit 47 (canonical 4-level addresses). */
const canonical = (v: bigint): bigint => (v & (1n << 47n) ? v | 0xffff_0000_0000_0000n : v);

export function linearAliases(memory: PhysicalReader, control: PagingControl, paddr: bigint, opts: ReverseMapOptions = {}): bigint[] {
  const format = pagingFormat(control);
  if (format === 'none') return paddr <= 0xffff_ffffn ? [paddr] : [];
  const limit = opts.limit ?? 16;
  let budget = opts.maxEntries ?? 1 << 20;
  const out: bigint[] = [];
  const entrySize = format === '32-bit' ? 4 : 8;
  const read = (addr: bigint): bigint | null => {
    if (budget-- <= 0) return null;
    try {
      return entrySize === 8 ? memory.readU64(Number(addr)) : BigInt(memory.readU32(Number(addr)) >>> 0);
    } catch {
      return null;
    }
  };
  // Level descriptors from the root down: index shift, entries per table, whether PS makes a leaf.
  const shape =
    format === '4-level'
      ? [
          { shift: 39n, entries: 512, leaf: false },
          { shift: 30n, entries: 512, leaf: true },
          { shift: 21n, entries: 512, leaf: true },
          { shift: 12n, entries: 512, leaf: true },
        ]
      : format === 'pae'
        ? [
            { shift: 30n, entries: 4, leaf: false },
            { shift: 21n, entries: 512, leaf: true },
            { shift: 12n, entries: 512, leaf: true },
          ]
        : [
            { shift: 22n, entries: 1024, leaf: (control.cr4 & (1n << 4n)) !== 0n },
            { shift: 12n, entries: 1024, leaf: true },
          ];
  const root = format === '4-level' ? control.cr3 & ADDR_4L : format === 'pae' ? control.cr3 & 0xffff_ffe0n : control.cr3 & 0xffff_f000n;

  const visit = (table: bigint, depth: number, prefix: bigint): void => {
    const lv = shape[depth]!;
    const isLast = depth === shape.length - 1;
    for (let i = 0; i < lv.entries && out.length < limit && budget > 0; i++) {
      const e = read(table + BigInt(i * entrySize));
      if (e === null || (e & 1n) === 0n) continue;
      const linear = prefix | (BigInt(i) << lv.shift);
      const ps = (e & 0x80n) !== 0n && lv.leaf && !isLast && !(format === 'pae' && depth === 0);
      if (isLast || ps) {
        const size = 1n << lv.shift;
        let base: bigint;
        if (format === '32-bit' && ps) base = (e & 0xffc0_0000n) | (((e >> 13n) & 0xffn) << 32n);
        else base = (entrySize === 8 ? e & ADDR_4L : e & 0xffff_f000n) & ~(size - 1n);
        if (paddr >= base && paddr < base + size) out.push(format === '4-level' ? canonical(linear + (paddr - base)) : linear + (paddr - base));
        continue;
      }
      visit(entrySize === 8 ? e & ADDR_4L : e & 0xffff_f000n, depth + 1, linear);
    }
  };
  visit(root, 0, 0n);
  return out;
}
