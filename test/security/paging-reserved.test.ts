import { describe, expect, it } from 'vitest';
import { PF, walk, type PhysicalReader } from '../../machine/cpu/x86/paging.js';
import { MAX_PHYS_ADDR_BITS } from '../../machine/cpu/x86/cpuid.js';

/** Sparse physical memory of 64-bit entries. */
function memory(entries: Record<number, bigint>): PhysicalReader {
  const m = new Map(Object.entries(entries).map(([k, v]) => [Number(k), v]));
  return {
    readU64: (a) => m.get(a) ?? 0n,
    readU32: (a) => Number(((m.get(a & ~7) ?? 0n) >> BigInt((a & 4) * 8)) & 0xffff_ffffn),
    writeU32: () => {},
    writeU64: () => {},
  };
}

const LONG = { cr0: 0x8000_0011n, cr3: 0x1000n, cr4: 0x20n, efer: 0x500n };
const PAE = { cr0: 0x8000_0011n, cr3: 0x1000n, cr4: 0x20n, efer: 0n };
const read = { access: 'read' as const, user: false, setAccessedDirty: false };

describe('page-table entries addressing memory above MAXPHYADDR', () => {
  it('4-level: a PTE, a table pointer or a large page above MAXPHYADDR is #PF with P|RSVD', () => {
    const above = 1n << BigInt(MAX_PHYS_ADDR_BITS);
    const tables = { 0x1000: 0x2003n, 0x2000: 0x3003n, 0x3000: 0x4003n };
    expect(walk(memory({ ...tables, 0x4000: 0x5003n }), LONG, 0n, read)).toMatchObject({ ok: true, paddr: 0x5000n });
    for (const [what, mem] of [
      ['PTE', { ...tables, 0x4000: above | 0x5003n }],
      ['PD entry (table)', { 0x1000: 0x2003n, 0x2000: 0x3003n, 0x3000: (1n << 45n) | 0x4003n }],
      ['PD entry (2 MiB page)', { 0x1000: 0x2003n, 0x2000: 0x3003n, 0x3000: above | 0x83n }],
      ['PDPT entry (1 GiB page)', { 0x1000: 0x2003n, 0x2000: (1n << 51n) | 0x83n }],
    ] as const) {
      const r = walk(memory(mem), LONG, 0n, read);
      expect(r, what).toMatchObject({ ok: false, errorCode: PF.P | PF.RSVD });
    }
    // The highest address below MAXPHYADDR is fine.
    expect(walk(memory({ ...tables, 0x4000: (above - 0x1000n) | 3n }), LONG, 0x123n, read)).toMatchObject({ ok: true, paddr: above - 0x1000n + 0x123n });
  });

  it('large pages with reserved low address bits (13-20 for 2 MiB, 13-29 for 1 GiB) are #PF with P|RSVD', () => {
    expect(walk(memory({ 0x1000: 0x2003n, 0x2000: 0x3003n, 0x3000: 0x20_0000n | (1n << 13n) | 0x83n }), LONG, 0n, { ...read, access: 'write' })).toMatchObject({ ok: false, errorCode: PF.P | PF.RSVD | PF.W });
    expect(walk(memory({ 0x1000: 0x2003n, 0x2000: 0x4000_0000n | (1n << 29n) | 0x83n }), LONG, 0n, read)).toMatchObject({ ok: false, errorCode: PF.P | PF.RSVD });
    // Bit 12 is PAT in a large-page entry, not an address bit.
    expect(walk(memory({ 0x1000: 0x2003n, 0x2000: 0x3003n, 0x3000: 0x20_0000n | (1n << 12n) | 0x83n }), LONG, 0n, read)).toMatchObject({ ok: true, paddr: 0x20_0000n });
  });

  it('PAE: the same for PDPTEs and PTEs', () => {
    const above = 1n << BigInt(MAX_PHYS_ADDR_BITS);
    expect(walk(memory({ 0x1000: above | 0x2001n }), PAE, 0n, read)).toMatchObject({ ok: false, errorCode: PF.P | PF.RSVD });
    expect(walk(memory({ 0x1000: 0x2001n, 0x2000: 0x3003n, 0x3000: above | 0x4003n }), PAE, 0n, read)).toMatchObject({ ok: false, errorCode: PF.P | PF.RSVD });
    expect(walk(memory({ 0x1000: 0x2001n, 0x2000: 0x3003n, 0x3000: 0x4003n }), PAE, 0n, read)).toMatchObject({ ok: true, paddr: 0x4000n });
  });
});
