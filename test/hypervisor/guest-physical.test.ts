import { describe, expect, it } from 'vitest';
import { PhysicalMemory, MiB, KiB } from '../../machine/memory/physical-memory.js';
import { walk, type PagingControl } from '../../machine/cpu/x86/paging.js';
import { CR0, CR4, EFER } from '../../machine/cpu/x86/registers.js';
import { FIRST_MIB_EXCLUSION, HostFrameAllocator } from '../../hypervisor/memory/frame-allocator.js';
import {
  EPT_QUAL,
  EptSecondLevel,
  EptTables,
  EptViolation,
  GuestPhysicalMemory,
  translateGuestVirtual,
  type EptAccessRecord,
} from '../../hypervisor/ept/index.js';

const RAM = 32 * MiB;
const ADDR = 0x000f_ffff_ffff_f000n;

// Guest page tables (guest-physical addresses).
const CR3 = 0x10000;
const G_PDPT = 0x11000;
const G_PD = 0x12000;
const G_PT = 0x13000;
// Guest PTE bits.
const P = 1n;
const RW = 2n;
const US = 4n;
const PS = 0x80n;

const va = (pml4: number, pdpt: number, pd: number, pt: number, off: number): bigint =>
  (BigInt(pml4) << 39n) | (BigInt(pdpt) << 30n) | (BigInt(pd) << 21n) | (BigInt(pt) << 12n) | BigInt(off);

const GVA_4K = va(1, 2, 3, 4, 0x678); // guest 4 KiB page -> GPA 0x2a5000 (EPT 4 KiB pages)
const GVA_2M = va(1, 2, 4, 0x12, 0x345); // guest 2 MiB page -> GPA 0x600000 (EPT 2 MiB page)
const GVA_IN_LP = va(1, 2, 3, 5, 0xabc); // guest 4 KiB page -> GPA 0x5ab000 (inside an EPT 2 MiB page)
const GVA_NO_EPT = va(1, 2, 3, 6, 0x10); // guest maps GPA 0x900000, which the EPT does not
const GVA_NO_GUEST = va(1, 2, 3, 7, 0); // guest PTE not present

const CONTROL: PagingControl = { cr0: CR0.PE | CR0.PG | CR0.WP, cr3: BigInt(CR3), cr4: CR4.PAE, efer: EFER.LME | EFER.LMA | EFER.NXE };

function setup() {
  const mem = new PhysicalMemory(RAM, new Uint8Array(128 * KiB));
  const alloc = new HostFrameAllocator(mem, {
    memoryMap: [
      { base: 0, length: 0x9fc00, type: 1 },
      { base: 0x100000, length: RAM - 0x100000, type: 1 },
    ],
    exclude: [FIRST_MIB_EXCLUSION],
  });
  const ept = new EptTables(mem, alloc, { owner: 'vm1:ept' });
  // GPA 0..4 MiB: 4 KiB frames mapped in reverse order (executable below 2 MiB only).
  const frames = alloc.allocate(1024, { owner: 'vm1:ram' });
  for (let i = 0; i < 1024; i++) ept.map(i * 0x1000, frames[1023 - i]!, 0x1000, { r: true, w: true, x: i < 0x200 });
  // GPA 4..8 MiB: two 2 MiB host pages, swapped.
  const lp = alloc.allocateLargePages(2, { owner: 'vm1:ram' });
  ept.map(0x400000, lp[1]!, 2 * MiB, { r: true, w: true, x: true, largePages: true });
  ept.map(0x600000, lp[0]!, 2 * MiB, { r: true, w: true, x: true, largePages: true });

  // Build the guest's 4-level tables in guest memory, through the EPT.
  const builder = new GuestPhysicalMemory(mem, ept, { pagingStructureAccesses: false, setAccessedDirty: false });
  builder.writeU64(CR3 + 1 * 8, BigInt(G_PDPT) | P | RW | US);
  builder.writeU64(G_PDPT + 2 * 8, BigInt(G_PD) | P | RW | US);
  builder.writeU64(G_PD + 3 * 8, BigInt(G_PT) | P | RW | US);
  builder.writeU64(G_PD + 4 * 8, 0x600000n | P | RW | PS);
  builder.writeU64(G_PT + 4 * 8, 0x2a5000n | P | RW | US);
  builder.writeU64(G_PT + 5 * 8, 0x5ab000n | P | RW);
  builder.writeU64(G_PT + 6 * 8, 0x900000n | P | RW);
  ept.collectDirty(); // start the A/D checks from a clean slate
  ept.clearAccessed();
  return { mem, alloc, ept, frames, lp, builder };
}

/**
 * Reference nested walk computed directly from raw host RAM (DataView over
 * PhysicalMemory.ram; all frames here are below the legacy hole's reach, so
 * RAM offset = host-physical address). Independent of eptWalk() and walk().
 */
function reference(mem: PhysicalMemory, eptp: bigint, cr3: number, gva: bigint) {
  const dv = new DataView(mem.ram.buffer);
  const rd = (hpa: bigint): bigint => dv.getBigUint64(Number(hpa), true);
  const ept = (gpa: bigint): bigint | null => {
    let table = eptp & ADDR;
    for (const shift of [39n, 30n, 21n, 12n]) {
      const e = rd(table + ((gpa >> shift) & 511n) * 8n);
      if ((e & 7n) === 0n) return null;
      const size = 1n << shift;
      if (shift === 12n || ((shift === 30n || shift === 21n) && (e & 0x80n) !== 0n)) return (e & ADDR & ~(size - 1n)) + (gpa & (size - 1n));
      table = e & ADDR;
    }
    return null;
  };
  const entries: { gpa: bigint; hpa: bigint; value: bigint }[] = [];
  let table = BigInt(cr3);
  for (const shift of [39n, 30n, 21n, 12n]) {
    const gpa = table + ((gva >> shift) & 511n) * 8n;
    const hpa = ept(gpa);
    if (hpa === null) return { entries, gpa: null, hpa: null };
    const value = rd(hpa);
    entries.push({ gpa, hpa, value });
    if ((value & 1n) === 0n) return { entries, gpa: null, hpa: null };
    const size = 1n << shift;
    if (shift === 12n || ((shift === 30n || shift === 21n) && (value & 0x80n) !== 0n)) {
      const gpaFinal = (value & ADDR & ~(size - 1n)) + (gva & (size - 1n));
      return { entries, gpa: gpaFinal, hpa: ept(gpaFinal) };
    }
    table = value & ADDR;
  }
  return { entries, gpa: null, hpa: null };
}

describe('GuestPhysicalMemory and the nested walk', () => {
  it('matches a reference nested walk computed from raw host memory', () => {
    const { mem, ept, frames, lp } = setup();
    const cases: [bigint, bigint, bigint][] = [
      [GVA_4K, 0x2a5678n, BigInt(frames[1023 - 0x2a5]!) + 0x678n],
      [GVA_2M, 0x612345n, BigInt(lp[0]!) + 0x12345n],
      [GVA_IN_LP, 0x5ababcn, BigInt(lp[1]!) + 0x1ababcn],
    ];
    for (const [gva, gpa, hpa] of cases) {
      const ref = reference(mem, ept.eptp(), CR3, gva);
      const t = translateGuestVirtual(mem, ept.eptp(), CONTROL, gva, 'read', false);
      expect(t.ok).toBe(true);
      expect(t.stage).toBe('complete');
      expect(t.gpa).toBe(gpa);
      expect(t.hpa).toBe(hpa);
      expect(ref.gpa).toBe(gpa);
      expect(ref.hpa).toBe(hpa);
      // Every guest table access: GPA of the guest entry, its value, and the HPA the EPT put it at.
      expect(t.guestSteps.map((s) => BigInt(s.entryAddr))).toEqual(ref.entries.map((e) => e.gpa));
      expect(t.guestSteps.map((s) => s.entry)).toEqual(ref.entries.map((e) => e.value));
      expect(t.tableAccesses.map((a) => [a.guestLevel, a.op, a.gpa, a.value, a.ept.ok ? a.ept.hpa : null])).toEqual(
        ref.entries.map((e, i) => [['PML4', 'PDPT', 'PD', 'PT'][i], 'read', e.gpa, e.value, e.hpa]),
      );
      // Guest table pages are 4 KiB EPT pages; each access is marked as a paging-structure access with a full EPT walk.
      for (const a of t.tableAccesses) expect(a.ept.ok && a.ept.steps.map((s) => s.level)).toEqual(['EPT PML4', 'EPT PDPT', 'EPT PD', 'EPT PT']);
      expect(t.final!.ok && t.final!.hpa).toBe(hpa);
      expect(t.reason).toBe(`GVA 0x${gva.toString(16)} -> GPA 0x${gpa.toString(16)} -> HPA 0x${hpa.toString(16)}`);
    }
    const big = translateGuestVirtual(mem, ept.eptp(), CONTROL, GVA_2M, 'read', false);
    expect(big.guest!.ok && big.guest!.pageSize).toBe(2 * MiB);
    expect(big.final!.ok && big.final!.pageSize).toBe(2 * MiB);
    expect(big.pageSize).toBe(2 * MiB);
    expect(translateGuestVirtual(mem, ept.eptp(), CONTROL, GVA_IN_LP, 'read', false).pageSize).toBe(4096);
    // Inspection changed nothing.
    expect(ept.collectDirty(0, 2 ** 30, { clear: false })).toEqual([]);
    expect([...ept.mappings()].some((m) => m.accessed)).toBe(false);
  });

  it('composes walk() with GuestPhysicalMemory: guest and EPT A/D bits set as the CPU would', () => {
    const { mem, ept, builder } = setup();
    const gpm = new GuestPhysicalMemory(mem, ept);
    const r = walk(gpm, CONTROL, GVA_4K, { access: 'write', user: true, setAccessedDirty: true });
    expect(r.ok && r.paddr).toBe(0x2a5678n);
    // Guest A on every level, D on the leaf (read back through the EPT).
    expect(builder.readU64(CR3 + 8) & 0x60n).toBe(0x20n);
    expect(builder.readU64(G_PD + 3 * 8) & 0x60n).toBe(0x20n);
    expect(builder.readU64(G_PT + 4 * 8) & 0x60n).toBe(0x60n);
    // With EPT A/D, the guest-table pages are written (dirty) by the walk; the data page is not touched yet.
    const dirty = ept.collectDirty(0, 0x400000, { clear: false }).map((d) => d.gpa);
    expect(dirty).toEqual([CR3, G_PDPT, G_PD, G_PT]);
    // The CPU then EPT-walks the final GPA as a translation access.
    const sl = new EptSecondLevel(mem, ept);
    const fin = sl.translate(r.ok ? r.paddr : 0n, 'write');
    expect(fin).toMatchObject({ writable: true, executable: false, dirty: true, pageSize: 4096 });
    expect(ept.lookup(0x2a5000)).toMatchObject({ accessed: true, dirty: true });
    expect(sl.translate(0x900000n, 'read')).toBeNull();
    expect(sl.lastFault).toMatchObject({ kind: 'violation', level: 'EPT PD', qualification: EPT_QUAL.READ | EPT_QUAL.GLA_VALID | EPT_QUAL.GLA_TRANSLATION });
  });

  it('raises EptViolation from inside the guest walk, with the paging-structure qualification', () => {
    const { mem, ept } = setup();
    ept.protect(G_PT, 0x1000, { r: true, w: false, x: false });
    const gpm = new GuestPhysicalMemory(mem, ept);
    let caught: unknown;
    try {
      walk(gpm, CONTROL, GVA_4K, { access: 'read', user: false, setAccessedDirty: true });
    } catch (e) {
      caught = e;
    }
    expect(caught).toBeInstanceOf(EptViolation);
    const v = caught as EptViolation;
    expect(v.kind).toBe('violation');
    expect(v.gpa).toBe(BigInt(G_PT + 4 * 8));
    // Read + write (EPT A/D makes guest-table accesses writes), readable, GLA valid, not the translation.
    expect(v.qualification).toBe(0x8b);
    expect(v.message).toBe(
      'EPT violation at guest-physical 0x13020 (read, EPT PT): guest paging-structure access (a write with EPT A/D) to a non-writable guest-physical page; exit qualification 0x8b',
    );

    const t = translateGuestVirtual(mem, ept.eptp(), CONTROL, GVA_4K, 'read', false);
    expect(t).toMatchObject({ ok: false, stage: 'ept-fault-in-guest-walk', guest: null, gpa: null, hpa: null });
    expect(t.eptFault!.qualification).toBe(0x8b);
    expect(t.guestSteps.map((s) => [s.level, s.index, s.entryAddr])).toEqual([
      ['PML4', 1, CR3 + 8],
      ['PDPT', 2, G_PDPT + 16],
      ['PD', 3, G_PD + 24],
    ]);
    expect(t.tableAccesses.map((a) => [a.guestLevel, a.ept.ok])).toEqual([['PML4', true], ['PDPT', true], ['PD', true], ['PT', false]]);
    expect(t.reason).toMatch(/^EPT violation on the guest PT entry at GPA 0x13020: /);

    // Without EPT A/D, reading a read-only guest table is fine; only the guest A-bit update (a write) faults.
    const noAd = ept.eptp() & ~0x40n;
    expect(translateGuestVirtual(mem, noAd, CONTROL, GVA_4K, 'read', false).ok).toBe(true);
    const t2 = translateGuestVirtual(mem, noAd, CONTROL, GVA_4K, 'read', false, { setAccessedDirty: true });
    expect(t2.stage).toBe('ept-fault-in-guest-walk');
    expect(t2.eptFault!.qualification).toBe(EPT_QUAL.WRITE | EPT_QUAL.READABLE | EPT_QUAL.GLA_VALID);
    // The PML4/PDPT/PD A-bit writes went through (their pages are writable); the PT one faulted.
    expect(t2.tableAccesses.map((a) => [a.op, a.guestLevel, a.ept.ok])).toEqual([
      ['read', 'PML4', true],
      ['read', 'PDPT', true],
      ['read', 'PD', true],
      ['read', 'PT', true],
      ['write', 'PML4', true],
      ['write', 'PDPT', true],
      ['write', 'PD', true],
      ['write', 'PT', false],
    ]);
    expect(t2.eptFault!.gpa).toBe(BigInt(G_PT + 4 * 8));
  });

  it('reports final-GPA EPT faults and guest page faults separately', () => {
    const { mem, ept } = setup();
    const noEpt = translateGuestVirtual(mem, ept.eptp(), CONTROL, GVA_NO_EPT, 'read', false);
    expect(noEpt).toMatchObject({ ok: false, stage: 'ept-fault-final', gpa: 0x900010n, hpa: null });
    expect(noEpt.final).toMatchObject({ ok: false, kind: 'violation', level: 'EPT PD' });
    expect(noEpt.eptFault!.qualification).toBe(0x181);
    // Fetch from a GPA the EPT maps RW- (GPA 0x2a5000 is below the executable range).
    const fetch = translateGuestVirtual(mem, ept.eptp(), CONTROL, GVA_4K, 'fetch', true);
    expect(fetch.stage).toBe('ept-fault-final');
    expect(fetch.eptFault!.qualification).toBe(EPT_QUAL.FETCH | EPT_QUAL.READABLE | EPT_QUAL.WRITABLE | EPT_QUAL.GLA_VALID | EPT_QUAL.GLA_TRANSLATION);
    // Guest #PF: no final EPT walk.
    const pf = translateGuestVirtual(mem, ept.eptp(), CONTROL, GVA_NO_GUEST, 'write', true);
    expect(pf).toMatchObject({ ok: false, stage: 'guest-page-fault', final: null, eptFault: null, reason: 'guest #PF (error code 0x6): PT entry not present' });
    // User access to a supervisor page.
    expect(translateGuestVirtual(mem, ept.eptp(), CONTROL, GVA_IN_LP, 'read', true).reason).toBe('guest #PF (error code 0x5): user access to a supervisor page');
    // Paging off: GVA = GPA.
    const flat = translateGuestVirtual(mem, ept.eptp(), { ...CONTROL, cr0: CR0.PE }, 0x2a5123n, 'read', false);
    expect(flat).toMatchObject({ ok: true, gpa: 0x2a5123n, tableAccesses: [] });
  });

  it('follows the tables: an edited EPT entry plus invalidate() changes the nested translation', () => {
    const { mem, ept, alloc } = setup();
    const before = translateGuestVirtual(mem, ept.eptp(), CONTROL, GVA_4K, 'read', false);
    const [fresh] = alloc.allocate(1, { owner: 'vm1:ram' });
    const pte = ept.lookup(0x2a5000)!;
    mem.writeU64(pte.entryAddr, (pte.entry & ~ADDR) | BigInt(fresh!));
    const gen = ept.generation;
    ept.invalidate();
    expect(ept.generation).toBe(gen + 1);
    const after = translateGuestVirtual(mem, ept.eptp(), CONTROL, GVA_4K, 'read', false);
    expect(after.hpa).toBe(BigInt(fresh!) + 0x678n);
    expect(after.hpa).not.toBe(before.hpa);
    // The same through the table API: remap the guest PT page elsewhere (copying it) and the guest walk follows.
    const oldPt = ept.lookup(G_PT)!.hpa;
    const [newPt] = alloc.allocate(1, { owner: 'vm1:ram' });
    mem.write(newPt!, mem.read(oldPt, 0x1000));
    mem.writeU64(newPt! + 4 * 8, 0x2a6000n | P | RW | US); // the copy points elsewhere
    ept.unmap(G_PT, 0x1000);
    ept.map(G_PT, newPt!, 0x1000, { r: true, w: true, x: false });
    const moved = translateGuestVirtual(mem, ept.eptp(), CONTROL, GVA_4K, 'read', false);
    expect(moved.gpa).toBe(0x2a6678n);
    expect(moved.tableAccesses[3]!.ept.ok && moved.tableAccesses[3]!.ept.hpa).toBe(BigInt(newPt!) + 0x20n);
  });

  it('reads and writes guest-physical data across non-contiguous host pages', () => {
    const { mem, ept, frames } = setup();
    const log: EptAccessRecord[] = [];
    const gpm = new GuestPhysicalMemory(mem, ept, { pagingStructureAccesses: false, onAccess: (r) => log.push(r) });
    gpm.write(0x2a5ffe, Uint8Array.of(1, 2, 3, 4));
    const lo = frames[1023 - 0x2a5]!;
    const hi = frames[1023 - 0x2a6]!;
    expect(hi).toBe(lo - 0x1000); // GPA order is reversed in host memory
    expect([...mem.ram.subarray(lo + 0xffe, lo + 0x1000)]).toEqual([1, 2]);
    expect([...mem.ram.subarray(hi, hi + 2)]).toEqual([3, 4]);
    expect([...gpm.read(0x2a5ffe, 4)]).toEqual([1, 2, 3, 4]);
    expect(gpm.readU32(0x2a5ffe)).toBe(0x04030201);
    expect(gpm.readU8(0x2a6001)).toBe(4);
    // The CpuMemory byte faces: CPU stores skip the DMA/code-invalidation listeners, write() does not.
    const dma: number[] = [];
    mem.onHostWrite((a) => dma.push(a));
    gpm.writeBytes(0x2a5ff0, Uint8Array.of(0xaa, 0xbb));
    expect(dma).toEqual([]);
    gpm.write(0x2a5ff2, Uint8Array.of(0xcc));
    expect(dma).toEqual([lo + 0xff2]);
    expect([...gpm.readBytes(0x2a5ff0, 3)]).toEqual([0xaa, 0xbb, 0xcc]);
    gpm.writeU64(0x2a5ffc, 0x1122334455667788n);
    expect(gpm.readU64(0x2a5ffc)).toBe(0x1122334455667788n);
    expect(mem.readU32(hi)).toBe(0x11223344);
    expect(log.every((r) => !r.pagingStructure && r.walk.ok)).toBe(true);
    expect(log.filter((r) => r.op === 'write').length).toBeGreaterThan(0);
    // Data writes set EPT D on both pages.
    expect(ept.lookup(0x2a5000)!.dirty && ept.lookup(0x2a6000)!.dirty).toBe(true);
    // A write that would fault on its second page writes nothing at all.
    ept.protect(0x2a6000, 0x1000, { r: true, w: false, x: false });
    expect(() => gpm.write(0x2a5fff, Uint8Array.of(9, 9))).toThrow(EptViolation);
    expect(mem.ram[lo + 0xfff]).toBe(0x55);
    expect(() => gpm.read(0x3ff000, 0x2000)).not.toThrow();
    expect(() => gpm.read(0x800000 - 4, 8)).toThrow(/EPT violation at guest-physical 0x800000 \(read, EPT PD\): EPT PD entry not present/);
  });
});
