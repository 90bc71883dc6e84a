import { describe, expect, it } from 'vitest';
import { PhysicalMemory, MiB, ROM_SIZE } from '../../machine/memory/physical-memory.js';
import { pageWalkViewFrom, flagText } from '../../machine/inspect/page-walk-view.js';
import { linearAliases } from '../../machine/inspect/reverse-map.js';
import type { PagingControl } from '../../machine/cpu/x86/paging.js';

const P = 1n, RW = 2n, US = 4n, A = 1n << 5n, D = 1n << 6n, PS = 1n << 7n, NX = 1n << 63n;
const CR0_PG_PE = 0x8001_0001n; // PG, WP, PE: supervisor writes honour RW
const LONG: Omit<PagingControl, 'cr3'> = { cr0: CR0_PG_PE, cr4: 0x20n, efer: 0xd00n }; // PAE; LME LMA NXE

/** A 4-level table: 0x1000 PML4 -> 0x2000 PDPT -> 0x3000 PD -> 0x4000 PT, plus a 2 MiB page. */
function fourLevel(): PhysicalMemory {
  const m = new PhysicalMemory(16 * MiB, new Uint8Array(ROM_SIZE));
  m.writeU64(0x1000, 0x2000n | P | RW | US | A);
  m.writeU64(0x2000, 0x3000n | P | RW | US);
  m.writeU64(0x3000 + 0 * 8, 0x4000n | P | RW | US); // 0-2 MiB through a PT
  m.writeU64(0x3000 + 1 * 8, 0x600000n | P | RW | PS | A | D); // 2-4 MiB -> 6 MiB, 2 MiB page, supervisor
  m.writeU64(0x3000 + 2 * 8, 0x5000n | P | RW | US); // 4-6 MiB through a PT whose entries are absent
  m.writeU64(0x4000 + 5 * 8, 0x7000n | P | US | A | NX); // 0x5000 -> 0x7000, read-only, NX
  return m;
}

describe('page-walk view against hand-built page tables', () => {
  it('shows every level of a 4 KiB translation with entry address, raw entry and decoded flags', () => {
    const v = pageWalkViewFrom(fourLevel(), { ...LONG, cr3: 0x1000n }, 0x5123n);
    expect(v.format).toBe('4-level');
    expect(v.levels.map((l) => [l.level, l.index, l.entryAddress, l.entry])).toEqual([
      ['PML4', 0, '0x0000000000001000', '0x0000000000002027'],
      ['PDPT', 0, '0x0000000000002000', '0x0000000000003007'],
      ['PD', 0, '0x0000000000003000', '0x0000000000004007'],
      ['PT', 5, '0x0000000000004028', '0x8000000000007025'],
    ]);
    expect(v.levels[3]!.flags).toEqual({ P: true, RW: false, US: true, A: true, D: false, PS: false, NX: true });
    expect(v.levels[3]!.flagText).toBe('P rw US A d ps NX');
    expect(v.levels.map((l) => l.next)).toEqual(['0x0000000000002000', '0x0000000000003000', '0x0000000000004000', '0x0000000000007000']);
    expect(v.result).toEqual({ ok: true, physical: '0x0000000000007123', pageBase: '0x0000000000007000', pageSize: 4096, writable: false, user: true, executable: false });
    expect(v.ept).toBeNull();
  });

  it('stops at a large page with PS set', () => {
    const v = pageWalkViewFrom(fourLevel(), { ...LONG, cr3: 0x1000n }, 0x2345678n & 0x3fffffn);
    expect(v.levels.map((l) => l.level)).toEqual(['PML4', 'PDPT', 'PD']);
    expect(v.levels[2]).toMatchObject({ index: 1, leaf: true, flagText: 'P RW us A D PS nx' });
    expect(v.result).toMatchObject({ ok: true, physical: '0x0000000000745678', pageSize: 2 * MiB, user: false });
  });

  it('reports a not-present entry at the level where the walk fails', () => {
    const v = pageWalkViewFrom(fourLevel(), { ...LONG, cr3: 0x1000n }, 0x40_1000n);
    expect(v.levels.map((l) => l.level)).toEqual(['PML4', 'PDPT', 'PD', 'PT']);
    expect(v.levels[3]!.fault).toBe('PT entry not present');
    expect(v.levels.slice(0, 3).every((l) => l.fault === undefined)).toBe(true);
    expect(v.result).toEqual({ ok: false, reason: 'PT entry not present', errorCode: '0x0', faultLevel: 'PT' });
  });

  it('reports permission faults (user access to a supervisor page, fetch from NX) with the error code', () => {
    const mem = fourLevel();
    const user = pageWalkViewFrom(mem, { ...LONG, cr3: 0x1000n }, 0x20_0000n, { user: true, access: 'write' });
    expect(user.result).toMatchObject({ ok: false, faultLevel: 'PD', errorCode: '0x7' });
    expect(user.levels[2]!.fault).toMatch(/supervisor/);
    const fetch = pageWalkViewFrom(mem, { ...LONG, cr3: 0x1000n }, 0x5000n, { access: 'fetch' });
    expect(fetch.result).toMatchObject({ ok: false, faultLevel: 'PT', errorCode: '0x11' });
  });

  it('non-canonical addresses fault before any level is read', () => {
    const v = pageWalkViewFrom(fourLevel(), { ...LONG, cr3: 0x1000n }, 0x0000_8000_0000_0000n);
    expect(v.levels).toEqual([]);
    expect(v.result).toMatchObject({ ok: false, faultLevel: null, reason: expect.stringMatching(/non-canonical/) });
  });

  it('32-bit paging with PSE: a 4 MiB page in the PD, 4-byte entries', () => {
    const m = new PhysicalMemory(16 * MiB, new Uint8Array(ROM_SIZE));
    m.writeU32(0x1000 + 1 * 4, 0x0080_0000 | 0x83); // 4-8 MiB -> 8 MiB, P RW PS
    const v = pageWalkViewFrom(m, { cr0: CR0_PG_PE, cr3: 0x1000n, cr4: 0x10n, efer: 0n }, 0x40_2000n);
    expect(v.format).toBe('32-bit');
    expect(v.levels).toHaveLength(1);
    expect(v.levels[0]).toMatchObject({ level: 'PD', index: 1, entry: '0x00800083', entryAddress: '0x0000000000001004' });
    expect(v.result).toMatchObject({ ok: true, physical: '0x0000000000802000', pageSize: 4 * MiB });
  });

  it('paging off: linear is physical, no levels', () => {
    const v = pageWalkViewFrom(fourLevel(), { cr0: 1n, cr3: 0n, cr4: 0n, efer: 0n }, 0x12345n);
    expect(v).toMatchObject({ format: 'none', levels: [], result: { ok: true, physical: '0x0000000000012345' } });
  });

  it('a table pointer into nothing is reported at that level, not thrown', () => {
    const m = fourLevel();
    const v = pageWalkViewFrom(m, { ...LONG, cr3: 0xdead_0000_0000n }, 0x1000n);
    expect(v.result).toMatchObject({ ok: false, faultLevel: 'PML4' });
  });

  it('flag text marks set flags upper case and clear ones lower case', () => {
    expect(flagText({ P: true, RW: false, US: false, A: false, D: false, PS: false, NX: false })).toBe('P rw us a d ps nx');
  });
});

describe('reverse map (physical to linear), used by physical breakpoints', () => {
  it('finds every linear alias of a physical address', () => {
    const m = fourLevel();
    m.writeU64(0x4000 + 9 * 8, 0x7000n | P); // a second mapping of the 0x7000 page at 0x9000
    expect(linearAliases(m, { ...LONG, cr3: 0x1000n }, 0x7010n)).toEqual([0x5010n, 0x9010n]);
    expect(linearAliases(m, { ...LONG, cr3: 0x1000n }, 0x600000n + 0x42n)).toEqual([0x200042n]);
    expect(linearAliases(m, { ...LONG, cr3: 0x1000n }, 0xa00000n)).toEqual([]);
    expect(linearAliases(m, { cr0: 1n, cr3: 0n, cr4: 0n, efer: 0n }, 0x1234n)).toEqual([0x1234n]);
  });

  it('sign-extends upper-half aliases in 4-level paging', () => {
    const m = fourLevel();
    m.writeU64(0x1000 + 256 * 8, 0x2000n | P | RW); // PML4[256] shares the PDPT
    expect(linearAliases(m, { ...LONG, cr3: 0x1000n }, 0x7000n)).toEqual([0x5000n, 0xffff_8000_0000_5000n]);
  });
});
