import { describe, expect, it } from 'vitest';
import { PhysicalMemory, MiB, KiB } from '../../machine/memory/physical-memory.js';
import { StateError, type StateRecord } from '../../machine/state.js';
import { FIRST_MIB_EXCLUSION, HostFrameAllocator } from '../../hypervisor/memory/frame-allocator.js';
import { EptTables, eptWalk, EPT_2M, type EptWalkOk } from '../../hypervisor/ept/index.js';

const RAM = 32 * MiB;

function setup(opts: { accessedDirty?: boolean } = {}) {
  const mem = new PhysicalMemory(RAM, new Uint8Array(128 * KiB));
  const alloc = new HostFrameAllocator(mem, {
    memoryMap: [
      { base: 0, length: 0x9fc00, type: 1 },
      { base: 0x100000, length: RAM - 0x100000, type: 1 },
    ],
    exclude: [FIRST_MIB_EXCLUSION],
  });
  const ept = new EptTables(mem, alloc, { owner: 'vm1:ept', accessedDirty: opts.accessedDirty });
  const raw = (addr: number): bigint => mem.readU64(addr);
  /** Table address held by an entry. */
  const next = (e: bigint): number => Number(e & 0x000f_ffff_ffff_f000n);
  const read = (gpa: number | bigint) => eptWalk(mem, ept.eptp(), gpa, 'read', { setAccessedDirty: false });
  return { mem, alloc, ept, raw, next, read };
}

const RW = { r: true, w: true, x: false };
const RWX = { r: true, w: true, x: true };
const RO = { r: true, w: false, x: false };

describe('EptTables', () => {
  it('builds the EPTP from the PML4 address: | 3 << 3 | WB 6 | A/D bit 6', () => {
    const { ept, alloc } = setup();
    expect(ept.pml4Address).toBe(0x100000);
    expect(ept.eptp()).toBe(0x100000n | 0x18n | 0x6n | 0x40n);
    expect(ept.eptp()).toBe(0x10005en);
    expect(alloc.ownerOf(0x100000)).toBe('vm1:ept');
    expect(setup({ accessedDirty: false }).ept.eptp()).toBe(0x10001en);
  });

  it('writes 4 KiB mappings as hand-computed Intel EPT entries', () => {
    const { ept, raw } = setup();
    ept.map(0x1000, 0x1400000, 0x2000, { ...RW });
    // Tables come from the allocator lowest first: PML4 0x100000, PDPT 0x101000, PD 0x102000, PT 0x103000.
    expect(ept.tableFrames()).toEqual([0x100000, 0x101000, 0x102000, 0x103000]);
    expect(raw(0x100000)).toBe(0x101007n); // PML4E[0]: PDPT | RWX
    expect(raw(0x101000)).toBe(0x102007n); // PDPTE[0]: PD | RWX
    expect(raw(0x102000)).toBe(0x103007n); // PDE[0]: PT | RWX
    expect(raw(0x103000)).toBe(0n); // PTE[0]: not mapped
    expect(raw(0x103008)).toBe(0x1400000n | 0x3n | (6n << 3n)); // PTE[1] = 0x1400033
    expect(raw(0x103008)).toBe(0x1400033n);
    expect(raw(0x103010)).toBe(0x1401033n);
    // Memory type UC with ignore-PAT for an MMIO page, execute-only page.
    ept.map(0x3000, 0xfee00000, 0x1000, { r: true, w: true, x: false, memType: 0, ignorePat: true });
    expect(raw(0x103018)).toBe(0xfee00000n | 0x3n | 0x40n);
    ept.map(0x4000, 0x1500000, 0x1000, { r: false, w: false, x: true, memType: 4 });
    expect(raw(0x103020)).toBe(0x1500000n | 0x4n | (4n << 3n));
    // A GPA in the second PML4 slot (512 GiB up) gets its own PDPT/PD/PT.
    ept.map(2 ** 39 + 0x5000, 0x1600000, 0x1000, RO);
    expect(raw(0x100008)).toBe(0x104007n);
    expect(raw(0x106000 + 5 * 8)).toBe(0x1600031n);
  });

  it('chooses 2 MiB pages when GPA, HPA and length allow', () => {
    const { ept, raw, next } = setup();
    ept.map(0x200000, 0x1000000, 0x500000, { ...RWX, largePages: true });
    const pd = next(raw(next(raw(0x100000))));
    expect(raw(pd + 1 * 8)).toBe(0x1000000n | 0x7n | 0x30n | 0x80n); // 0x10000b7
    expect(raw(pd + 2 * 8)).toBe(0x12000b7n);
    // The last 1 MiB is not a whole 2 MiB page: 256 PTEs.
    const pde3 = raw(pd + 3 * 8);
    expect(pde3 & 0x80n).toBe(0n);
    const pt = next(pde3);
    expect(raw(pt)).toBe(0x1400037n);
    expect(raw(pt + 255 * 8)).toBe(0x14ff037n);
    expect(raw(pt + 256 * 8)).toBe(0n);
    expect([...ept.mappings()].map((m) => [m.gpa, m.hpa, m.size])).toEqual([
      [0x200000, 0x1000000, EPT_2M],
      [0x400000, 0x1200000, EPT_2M],
      ...Array.from({ length: 256 }, (_, i) => [0x600000 + i * 0x1000, 0x1400000 + i * 0x1000, 0x1000]),
    ]);
    expect(ept.ranges()).toEqual([{ gpa: 0x200000, hpa: 0x1000000, length: 0x500000, perms: RWX, memType: 6, ignorePat: false }]);
    // Misaligned HPA: 4 KiB pages only, even with largePages.
    ept.map(0x800000, 0x1601000, EPT_2M, { ...RW, largePages: true });
    expect(ept.lookup(0x800000)!.size).toBe(0x1000);
    // largePages off: 4 KiB pages.
    ept.map(0xa00000, 0x1800000, EPT_2M, RW);
    expect(ept.lookup(0xa00000)!.size).toBe(0x1000);
  });

  it('rejects overlapping maps and bad arguments with clear errors', () => {
    const { ept } = setup();
    ept.map(0x200000, 0x1000000, EPT_2M, { ...RW, largePages: true });
    const gen = ept.generation;
    expect(() => ept.map(0x3ff000, 0x0, 0x2000, RW)).toThrow('map(0x3ff000, 0x0, 0x2000): overlaps the existing mapping GPA 0x200000-0x3fffff -> HPA 0x1000000');
    expect(() => ept.map(0x1800, 0x0, 0x1000, RW)).toThrow('map(0x1800, 0x0, 0x1000): guest-physical address 0x1800 is not 4 KiB aligned');
    expect(() => ept.map(0x1000, 0x10, 0x1000, RW)).toThrow('host-physical address 0x10 is not 4 KiB aligned');
    expect(() => ept.map(0x1000, 0x0, 0x1001, RW)).toThrow('length 0x1001 is not a positive multiple of 4 KiB');
    expect(() => ept.map(0x1000, 0x0, 0, RW)).toThrow('length 0x0 is not a positive multiple of 4 KiB');
    expect(() => ept.map(0x1000, 0x0, 0x1000, { r: false, w: true, x: false })).toThrow('write without read (W=1, R=0) is an EPT misconfiguration');
    expect(() => ept.map(0x1000, 0x0, 0x1000, { r: false, w: false, x: false })).toThrow(/no permissions/);
    expect(() => ept.map(0x1000, 0x0, 0x1000, { ...RW, memType: 2 })).toThrow('memory type 2 is invalid');
    expect(() => ept.map(0x1000, 0x0, 0x1000, { ...RW, memType: 7 })).toThrow('memory type 7 is invalid');
    expect(() => ept.map(2 ** 48 - 0x1000, 0x0, 0x2000, RW)).toThrow(/beyond the 48-bit guest-physical space/);
    expect(() => ept.map(0x1000, 2 ** 40, 0x1000, RW)).toThrow(/beyond the 40-bit host physical address space/);
    expect(() => ept.protect(0x1000, 0x1000, RO)).toThrow('protect(0x1000, 0x1000): guest-physical 0x1000 is not mapped');
    expect(() => ept.protect(0x3ff000, 0x2000, RO)).toThrow('guest-physical 0x400000 is not mapped');
    expect(() => ept.protect(0x200000, 0x1000, { r: false, w: true, x: true })).toThrow(/W=1, R=0/);
    expect(ept.generation).toBe(gen); // failed calls change nothing
    expect(ept.lookup(0x3ff000)!.size).toBe(EPT_2M);
  });

  it('unmaps, splitting 2 MiB pages at the edges and freeing empty tables', () => {
    const { ept, raw, next, alloc } = setup();
    ept.map(0x200000, 0x1000000, 0x400000, { ...RW, largePages: true });
    expect(ept.tableFrames()).toHaveLength(3);
    expect(ept.unmap(0x201000, 0x1000)).toBe(0x1000);
    expect(ept.tableFrames()).toHaveLength(4); // a PT was created by the split
    const pd = next(raw(next(raw(0x100000))));
    const pt = next(raw(pd + 8));
    expect(raw(pd + 8)).toBe(BigInt(pt) | 7n);
    expect(raw(pt)).toBe(0x1000033n); // first 4 KiB of the old 2 MiB page, same attributes (no PS)
    expect(raw(pt + 8)).toBe(0n);
    expect(raw(pt + 511 * 8)).toBe(0x11ff033n);
    expect(ept.lookup(0x201000)).toBeNull();
    expect(ept.lookup(0x202abc)).toMatchObject({ gpa: 0x202000, hpa: 0x1002000, size: 0x1000 });
    expect(ept.lookup(0x400000)).toMatchObject({ gpa: 0x400000, hpa: 0x1200000, size: EPT_2M, level: 'EPT PD' });
    // Unmapping everything returns every table but the PML4 to the allocator.
    expect(ept.unmap(0, 0x1000000)).toBe(0x400000 - 0x1000);
    expect(ept.tableFrames()).toEqual([0x100000]);
    expect(alloc.usage().byOwner).toEqual({ 'vm1:ept': 1 });
    expect(raw(0x100000)).toBe(0n);
    expect([...ept.mappings()]).toEqual([]);
    // Unmapping nothing is fine.
    expect(ept.unmap(0x5000, 0x1000)).toBe(0);
  });

  it('protects ranges, splitting 2 MiB pages and preserving A/D and memory type', () => {
    const { ept, mem, raw, next } = setup();
    ept.map(0x400000, 0x1000000, EPT_2M, { ...RWX, largePages: true });
    // Touch the page so A/D are set, then split it with protect.
    const w = eptWalk(mem, ept.eptp(), 0x400123, 'write', { setAccessedDirty: true });
    expect(w.ok).toBe(true);
    ept.protect(0x410000, 0x2000, RO);
    const pd = next(raw(next(raw(0x100000))));
    const pt = next(raw(pd + 2 * 8));
    const AD = 0x300n;
    expect(raw(pt + 0x0f * 8)).toBe(0x100f000n | 0x37n | AD);
    expect(raw(pt + 0x10 * 8)).toBe(0x1010000n | 0x31n | AD);
    expect(raw(pt + 0x11 * 8)).toBe(0x1011000n | 0x31n | AD);
    expect(raw(pt + 0x12 * 8)).toBe(0x1012000n | 0x37n | AD);
    expect(ept.ranges().map((r) => [r.gpa, r.length, r.perms])).toEqual([
      [0x400000, 0x10000, RWX],
      [0x410000, 0x2000, RO],
      [0x412000, EPT_2M - 0x12000, RWX],
    ]);
    // Whole 2 MiB pages are re-permissioned in place, without a split.
    ept.map(0x600000, 0x1200000, EPT_2M, { ...RWX, largePages: true });
    const frames = ept.tableFrames().length;
    ept.protect(0x600000, EPT_2M, { r: false, w: false, x: true });
    expect(ept.tableFrames()).toHaveLength(frames);
    expect(raw(pd + 3 * 8)).toBe(0x1200000n | 0x4n | 0x30n | 0x80n);
  });

  it('is authoritative: an entry edited in RAM plus invalidate() changes what the walker sees', () => {
    const { ept, mem, read } = setup();
    ept.map(0x7000, 0x1400000, 0x1000, RW);
    const seen: number[] = [];
    const off = ept.onInvalidate((g) => seen.push(g));
    const before = read(0x7abc) as EptWalkOk;
    expect(before.ok && before.hpa).toBe(0x1400abcn);
    const pte = before.steps[3]!;
    expect(pte.level).toBe('EPT PT');
    mem.writeU64(pte.entryAddr, 0x1555000n | 0x33n);
    const gen = ept.generation;
    expect(ept.invalidate()).toBe(gen + 1);
    expect(seen).toEqual([gen + 1]);
    expect((read(0x7abc) as EptWalkOk).hpa).toBe(0x1555abcn);
    expect(ept.lookup(0x7000)!.hpa).toBe(0x1555000);
    // Every table operation bumps the generation.
    ept.map(0x8000, 0x1600000, 0x1000, RW);
    ept.protect(0x8000, 0x1000, RO);
    ept.unmap(0x8000, 0x1000);
    expect(seen).toEqual([gen + 1, gen + 2, gen + 3, gen + 4]);
    off();
    ept.invalidate();
    expect(seen).toHaveLength(4);
    expect(ept.generation).toBe(gen + 5);
  });

  it('sets A/D on walks; collectDirty reads and clears D and bumps the generation', () => {
    const { ept, mem } = setup();
    ept.map(0x10000, 0x1400000, 0x4000, RW);
    ept.map(0x400000, 0x1600000, EPT_2M, { ...RW, largePages: true });
    const eptp = ept.eptp();
    const r = eptWalk(mem, eptp, 0x10010, 'read', { setAccessedDirty: true }) as EptWalkOk;
    expect(r.steps.map((s) => [s.flags.A, s.flags.D])).toEqual([[true, false], [true, false], [true, false], [true, false]]);
    expect(mem.readU64(r.steps[3]!.entryAddr)).toBe(0x1400133n); // A = bit 8
    eptWalk(mem, eptp, 0x12000, 'write', { setAccessedDirty: true });
    eptWalk(mem, eptp, 0x480000, 'write', { setAccessedDirty: true });
    expect(ept.lookup(0x12000)).toMatchObject({ accessed: true, dirty: true });
    expect(mem.readU64(ept.lookup(0x12000)!.entryAddr)).toBe(0x1402333n);
    expect(ept.lookup(0x10000)).toMatchObject({ accessed: true, dirty: false });
    expect(ept.lookup(0x11000)).toMatchObject({ accessed: false, dirty: false });
    // Inspection walks change nothing.
    eptWalk(mem, eptp, 0x13000, 'write', { setAccessedDirty: false });
    expect(ept.lookup(0x13000)!.dirty).toBe(false);

    const gen = ept.generation;
    expect(ept.collectDirty(0, 2 ** 30, { clear: false })).toEqual([{ gpa: 0x12000, size: 0x1000 }, { gpa: 0x400000, size: EPT_2M }]);
    expect(ept.generation).toBe(gen);
    expect(ept.collectDirty()).toEqual([{ gpa: 0x12000, size: 0x1000 }, { gpa: 0x400000, size: EPT_2M }]);
    expect(ept.generation).toBe(gen + 1);
    expect(mem.readU64(ept.lookup(0x12000)!.entryAddr)).toBe(0x1402133n); // D cleared, A kept
    expect(ept.collectDirty()).toEqual([]);
    expect(ept.generation).toBe(gen + 1);
    eptWalk(mem, eptp, 0x13000, 'write', { setAccessedDirty: true });
    expect(ept.clearDirty(0x13000, 0x1000)).toBe(1);
    expect(ept.clearAccessed()).toBe(4);
    expect(ept.lookup(0x10000)!.accessed).toBe(false);
    expect(mem.readU64(0x100000) & 0x100n).toBe(0n);
  });

  it('does not set A/D when the EPTP leaves them disabled', () => {
    const { ept, mem } = setup({ accessedDirty: false });
    ept.map(0x10000, 0x1400000, 0x1000, RW);
    const r = eptWalk(mem, ept.eptp(), 0x10000, 'write', { setAccessedDirty: true }) as EptWalkOk;
    expect(r.ok).toBe(true);
    expect(r.steps.every((s) => !s.flags.A && !s.flags.D)).toBe(true);
    expect(ept.collectDirty()).toEqual([]);
  });

  it('rolls back a map that runs out of table frames', () => {
    const mem = new PhysicalMemory(RAM, new Uint8Array(128 * KiB));
    const alloc = new HostFrameAllocator(mem, { memoryMap: [{ base: 0x100000, length: 0x4000, type: 1 }] });
    const ept = new EptTables(mem, alloc, { owner: 'vm9:ept' });
    expect(alloc.freeFrames).toBe(3);
    // Two PTs are needed (the range crosses a 2 MiB line) besides the PDPT and PD: 4 frames, 3 free.
    const gen = ept.generation;
    expect(() => ept.map(0x1ff000, 0x1000000, 0x2000, RW)).toThrow(/cannot allocate 1 frame for 'vm9:ept'/);
    expect([...ept.mappings()]).toEqual([]);
    expect(ept.tableFrames()).toEqual([0x100000]);
    expect(alloc.freeFrames).toBe(3);
    expect(ept.generation).toBe(gen + 1);
    ept.map(0x0, 0x1000000, 0x2000, RW);
    expect(alloc.freeFrames).toBe(0);
  });

  it('destroy returns every table frame; state round-trips against a restored allocator', () => {
    const { ept, alloc, mem } = setup();
    ept.map(0x0, 0x1000000, 0x400000, { ...RW, largePages: true });
    ept.map(0x40000000, 0x1400000, 0x1000, RW);
    const allocState = structuredClone(alloc.saveState()) as StateRecord;
    const eptState = structuredClone(ept.saveState()) as StateRecord;
    expect(eptState).toMatchObject({ version: 1, owner: 'vm1:ept', pml4: 0x100000, accessedDirty: true, destroyed: false });

    // A second VM object adopting the saved state (RAM is shared here, as after a RAM restore).
    const alloc2 = new HostFrameAllocator(mem, {
      memoryMap: [
        { base: 0, length: 0x9fc00, type: 1 },
        { base: 0x100000, length: RAM - 0x100000, type: 1 },
      ],
      exclude: [FIRST_MIB_EXCLUSION],
    });
    alloc2.restoreState(allocState);
    const ept2 = EptTables.restore(mem, alloc2, { owner: 'vm1:ept' }, eptState);
    expect(ept2.eptp()).toBe(ept.eptp());
    expect(ept2.generation).toBe(ept.generation + 1);
    expect([...ept2.mappings()].map((m) => [m.gpa, m.hpa, m.size])).toEqual([...ept.mappings()].map((m) => [m.gpa, m.hpa, m.size]));

    expect(() => ept2.restoreState({ ...eptState, owner: 'vm2:ept' })).toThrow(new StateError('ept:vm1:ept', 'owner', `expected 'vm1:ept', got "vm2:ept"`));
    expect(() => ept2.restoreState({ ...eptState, tables: [0x100000, 0x700000] })).toThrow(
      "ept:vm1:ept: state field 'tables[1]': frame 0x700000 is not allocated in the allocator, expected 'vm1:ept'",
    );
    expect(() => ept2.restoreState({ ...eptState, pml4: 0x5000 })).toThrow("state field 'pml4': 0x5000 is not one of the saved table frames");
    expect(() => ept2.restoreState({ ...eptState, generation: 'x' })).toThrow("state field 'generation'");

    ept.destroy();
    expect(alloc.usage().byOwner).toEqual({});
    expect(() => ept.map(0, 0, 0x1000, RW)).toThrow("EPT tables 'vm1:ept' were destroyed");
  });
});
