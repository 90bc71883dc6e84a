import { describe, expect, it } from 'vitest';
import { PhysicalMemory, MiB, KiB } from '../../machine/memory/physical-memory.js';
import {
  decodeEptEntry,
  decodeEptp,
  decodeEptQualification,
  EPT_QUAL,
  eptWalk,
  formatEptFlags,
  makeEptp,
  type EptWalkFault,
  type EptWalkOk,
} from '../../hypervisor/ept/index.js';

/**
 * Hand-built EPT in a fixed layout, written as raw entries (no EptTables), so
 * the walker is tested against the SDM format alone:
 *   PML4 0x100000, PDPT 0x101000, PD 0x102000, PT 0x103000.
 */
const PML4 = 0x100000;
const PDPT = 0x101000;
const PD = 0x102000;
const PT = 0x103000;
const WB = 6n << 3n;

function setup(ad = true) {
  const mem = new PhysicalMemory(32 * MiB, new Uint8Array(128 * KiB));
  const put = (addr: number, v: bigint) => mem.writeU64(addr, v);
  put(PML4, BigInt(PDPT) | 7n);
  put(PDPT, BigInt(PD) | 7n);
  put(PD, BigInt(PT) | 7n);
  const eptp = makeEptp(PML4, { accessedDirty: ad });
  const walk = (gpa: number | bigint, access: 'read' | 'write' | 'fetch', guestLinear?: 'none' | 'translation' | 'paging-structure') =>
    eptWalk(mem, eptp, gpa, access, { setAccessedDirty: false, guestLinear });
  return { mem, put, eptp, walk };
}

const fault = (r: ReturnType<ReturnType<typeof setup>['walk']>): EptWalkFault => {
  if (r.ok) throw new Error('expected a fault');
  return r;
};

describe('eptWalk', () => {
  it('translates through 4 KiB, 2 MiB and 1 GiB leaves with steps like the guest walker', () => {
    const { put, walk } = setup();
    put(PT + 5 * 8, 0x1234000n | 3n | WB); // GPA 0x5000 -> 0x1234000, RW
    put(PD + 1 * 8, 0x1600000n | 7n | WB | 0x80n | 0x40n); // GPA 0x200000 2 MiB -> 0x1600000, RWX, IPAT
    put(PDPT + 1 * 8, 0x80000000n | 5n | WB | 0x80n); // GPA 1 GiB..2 GiB -> 0x80000000, R-X
    const a = walk(0x5abc, 'write') as EptWalkOk;
    expect(a).toMatchObject({ ok: true, gpa: 0x5abcn, hpa: 0x1234abcn, pageBase: 0x1234000n, pageSize: 4096, perms: { r: true, w: true, x: false }, memType: 6, ignorePAT: false, dirty: false });
    expect(a.steps.map((s) => [s.level, s.index, s.entryAddr])).toEqual([
      ['EPT PML4', 0, PML4],
      ['EPT PDPT', 0, PDPT],
      ['EPT PD', 0, PD],
      ['EPT PT', 5, PT + 40],
    ]);
    expect(a.steps[3]!.entry).toBe(0x1234033n);
    expect(a.steps[3]!.flags).toEqual({ R: true, W: true, X: false, memType: 6, ignorePAT: false, PS: false, A: false, D: false });
    const b = walk(0x3fffff, 'fetch') as EptWalkOk;
    expect(b).toMatchObject({ ok: true, hpa: 0x17fffffn, pageSize: 2 * MiB, ignorePAT: true, perms: { r: true, w: true, x: true } });
    expect(b.steps.map((s) => s.level)).toEqual(['EPT PML4', 'EPT PDPT', 'EPT PD']);
    expect(b.steps[2]!.flags.PS).toBe(true);
    const c = walk(0x40000000 + 0x12345678, 'fetch') as EptWalkOk;
    expect(c).toMatchObject({ ok: true, hpa: 0x80000000n + 0x12345678n, pageSize: 1024 * MiB, perms: { r: true, w: false, x: true } });
    expect(c.steps.map((s) => s.level)).toEqual(['EPT PML4', 'EPT PDPT']);
    expect(formatEptFlags(c.steps[1]!.flags)).toBe('R - X WB PS');
  });

  it('reports violations with the Intel exit qualification', () => {
    const { put, walk } = setup();
    put(PT + 1 * 8, 0x1400000n | 4n | WB); // execute-only
    put(PT + 2 * 8, 0x1401000n | 1n | WB); // read-only
    put(PT + 3 * 8, 0x1402000n | 3n | WB); // read/write
    // read of X-only: bit 0, plus bits 5:3 = R0 W0 X1.
    let f = fault(walk(0x1000, 'read'));
    expect(f).toMatchObject({ kind: 'violation', level: 'EPT PT', faultLevel: 3, reason: 'read of a non-readable guest-physical page' });
    expect(f.qualification).toBe(EPT_QUAL.READ | EPT_QUAL.EXECUTABLE);
    expect(f.qualification).toBe(0x21);
    // write to R-only: bit 1, readable.
    f = fault(walk(0x2000, 'write'));
    expect(f.qualification).toBe(0x0a);
    expect(f.reason).toBe('write to a non-writable guest-physical page');
    // fetch from RW: bit 2, readable + writable.
    f = fault(walk(0x3000, 'fetch'));
    expect(f.qualification).toBe(0x1c);
    expect(decodeEptQualification(f.qualification)).toEqual({ read: false, write: false, fetch: true, readable: true, writable: true, executable: false, glaValid: false, glaTranslation: false });
    // Not present at the PT: permissions all 0.
    f = fault(walk(0x4000, 'write'));
    expect(f).toMatchObject({ kind: 'violation', level: 'EPT PT', reason: 'EPT PT entry not present', qualification: 0x2 });
    // Not present at the PML4 (GPA 512 GiB).
    f = fault(walk(2n ** 39n, 'read'));
    expect(f).toMatchObject({ level: 'EPT PML4', faultLevel: 0, qualification: 0x1 });
    expect(f.steps).toHaveLength(1);
    // Permissions are the AND over the levels: a read-only PDE makes its PT read-only.
    put(PD, BigInt(PT) | 1n);
    f = fault(walk(0x3000, 'write'));
    expect(f.qualification).toBe(EPT_QUAL.WRITE | EPT_QUAL.READABLE);
    // Guest-linear bits: translation sets 7 and 8, a paging-structure access only 7.
    put(PD, BigInt(PT) | 7n);
    expect(fault(walk(0x1000, 'read', 'translation')).qualification).toBe(0x21 | 0x180);
    // With EPT A/D, a paging-structure access is a write: bits 0 and 1, and W is needed.
    f = fault(walk(0x2000, 'read', 'paging-structure'));
    expect(f.qualification).toBe(EPT_QUAL.READ | EPT_QUAL.WRITE | EPT_QUAL.READABLE | EPT_QUAL.GLA_VALID);
    expect(f.qualification).toBe(0x8b);
    expect(f.reason).toMatch(/paging-structure access \(a write with EPT A\/D\)/);
    expect(walk(0x3000, 'read', 'paging-structure').ok).toBe(true);
  });

  it('without EPT A/D, paging-structure reads are reads', () => {
    const { put, walk } = setup(false);
    put(PT + 2 * 8, 0x1401000n | 1n | WB);
    expect(walk(0x2000, 'read', 'paging-structure').ok).toBe(true);
    expect(fault(walk(0x2000, 'write', 'paging-structure')).qualification).toBe(EPT_QUAL.WRITE | EPT_QUAL.READABLE | EPT_QUAL.GLA_VALID);
  });

  it('reports misconfigurations: W without R, bad memory types, reserved bits, PS in a PML4E', () => {
    const { put, walk, mem, eptp } = setup();
    put(PT + 1 * 8, 0x1400000n | 2n | WB); // W only
    let f = fault(walk(0x1000, 'read'));
    expect(f).toMatchObject({ kind: 'misconfig', level: 'EPT PT', reason: 'EPT PT entry is writable but not readable (W=1, R=0)', qualification: 0x1 });
    for (const mt of [2n, 3n, 7n]) {
      put(PT + 1 * 8, 0x1400000n | 7n | (mt << 3n));
      f = fault(walk(0x1000, 'fetch'));
      expect(f).toMatchObject({ kind: 'misconfig', level: 'EPT PT', reason: `EPT PT entry has invalid memory type ${mt}` });
    }
    // Valid types pass: UC 0, WC 1, WT 4, WP 5, WB 6.
    for (const mt of [0n, 1n, 4n, 5n, 6n]) {
      put(PT + 1 * 8, 0x1400000n | 7n | (mt << 3n));
      expect(walk(0x1000, 'read').ok).toBe(true);
    }
    // Address bits above MAXPHYADDR (40) are reserved.
    put(PT + 1 * 8, (1n << 45n) | 0x1400000n | 7n | WB);
    f = fault(walk(0x1000, 'read'));
    expect(f).toMatchObject({ kind: 'misconfig', reason: 'EPT PT entry has reserved bits 0x200000000000 set' });
    expect(eptWalk(mem, eptp, 0x1000, 'read', { setAccessedDirty: false, maxPhysAddrBits: 52 }).ok).toBe(true);
    // Bits 62:52 are ignored, 63 (suppress #VE) too.
    put(PT + 1 * 8, (1n << 63n) | (1n << 55n) | 0x1400000n | 7n | WB);
    expect(walk(0x1000, 'read').ok).toBe(true);
    // Memory-type bits in a non-leaf entry are reserved.
    put(PD, BigInt(PT) | 7n | WB);
    f = fault(walk(0x1000, 'read'));
    expect(f).toMatchObject({ kind: 'misconfig', level: 'EPT PD', reason: 'EPT PD entry has reserved bits 0x30 set' });
    put(PD, BigInt(PT) | 7n);
    // A 2 MiB page with address bits 20:12 set.
    put(PD + 8, 0x1601000n | 7n | WB | 0x80n);
    expect(fault(walk(0x200000, 'read'))).toMatchObject({ kind: 'misconfig', level: 'EPT PD', reason: 'EPT PD entry has reserved bits 0x1000 set' });
    // A 1 GiB page with address bits 29:12 set.
    put(PDPT + 8, 0x80200000n | 7n | WB | 0x80n);
    expect(fault(walk(0x40000000, 'read'))).toMatchObject({ kind: 'misconfig', level: 'EPT PDPT', reason: 'EPT PDPT entry has reserved bits 0x200000 set' });
    // Page-size bit in a PML4E.
    put(PML4, BigInt(PDPT) | 7n | 0x80n);
    f = fault(walk(0x1000, 'read'));
    expect(f).toMatchObject({ kind: 'misconfig', level: 'EPT PML4', faultLevel: 0, reason: 'EPT PML4 entry has the page-size bit set (reserved in a PML4E)' });
    // Misconfiguration wins over a permission violation in the same entry: W-only is checked before the access.
    put(PML4, BigInt(PDPT) | 2n);
    expect(fault(walk(0x1000, 'fetch')).kind).toBe('misconfig');
    // A not-present entry is never misconfigured, whatever its other bits.
    put(PML4, 0xfff0n);
    expect(fault(walk(0x1000, 'read')).kind).toBe('violation');
  });

  it('validates the EPTP', () => {
    const { mem } = setup();
    const w = (eptp: bigint) => fault(eptWalk(mem, eptp, 0x1000, 'read', { setAccessedDirty: false }));
    expect(w(BigInt(PML4) | 0x18n | 1n)).toMatchObject({ kind: 'misconfig', level: 'EPTP', faultLevel: -1, reason: 'EPTP memory type 1 is not UC (0) or WB (6)' });
    expect(w(BigInt(PML4) | 0x20n | 6n)).toMatchObject({ level: 'EPTP', reason: 'EPTP page-walk length 5 is not 4' });
    expect(w(BigInt(PML4) | 0x18n | 6n | 0x100n)).toMatchObject({ level: 'EPTP', reason: /reserved bits 0x100 set/ });
    expect(decodeEptp(makeEptp(PML4))).toEqual({ pml4: BigInt(PML4), memType: 6, walkLength: 4, accessedDirty: true });
    expect(() => makeEptp(0x100010)).toThrow(/not 4 KiB aligned/);
  });

  it('rejects guest-physical addresses a 4-level EPT cannot translate', () => {
    const { walk } = setup();
    expect(fault(walk(2n ** 48n, 'read'))).toMatchObject({ kind: 'violation', level: 'EPTP', reason: /beyond the 48 bits/, qualification: 0x1 });
  });

  it('sets A on every level and D on the leaf for writes, only when asked and enabled', () => {
    const { put, mem, eptp } = setup();
    put(PT + 1 * 8, 0x1400000n | 3n | WB);
    eptWalk(mem, eptp, 0x1000, 'read', { setAccessedDirty: false });
    expect(mem.readU64(PT + 8)).toBe(0x1400033n);
    const r = eptWalk(mem, eptp, 0x1000, 'read', { setAccessedDirty: true }) as EptWalkOk;
    expect([PML4, PDPT, PD].map((a) => mem.readU64(a) & 0x300n)).toEqual([0x100n, 0x100n, 0x100n]);
    expect(mem.readU64(PT + 8)).toBe(0x1400133n);
    expect(r.steps[3]!.flags).toMatchObject({ A: true, D: false });
    const w = eptWalk(mem, eptp, 0x1000, 'write', { setAccessedDirty: true }) as EptWalkOk;
    expect(w.dirty).toBe(true);
    expect(mem.readU64(PT + 8)).toBe(0x1400333n);
    expect(mem.readU64(PD) & 0x200n).toBe(0n); // no D in non-leaf entries
    // A faulting walk sets nothing.
    put(PT + 2 * 8, 0x1401000n | 1n | WB);
    eptWalk(mem, eptp, 0x2000, 'write', { setAccessedDirty: true });
    expect(mem.readU64(PT + 16)).toBe(0x1401031n);
    expect(decodeEptEntry(0x1401331n)).toEqual({ R: true, W: false, X: false, memType: 6, ignorePAT: false, PS: false, A: true, D: true });
  });
});
