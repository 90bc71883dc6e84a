import { describe, expect, it } from 'vitest';
import { PhysicalMemory, MiB, KiB } from '../../machine/memory/physical-memory.js';
import { StateError, type StateRecord } from '../../machine/state.js';
import {
  FIRST_MIB_EXCLUSION,
  FRAME_SIZE,
  FrameAllocatorError,
  HostFrameAllocator,
  LARGE_PAGE_SIZE,
  type HostMemoryRange,
} from '../../hypervisor/memory/frame-allocator.js';

const RAM = 32 * MiB;

/** The firmware-style handoff for a 32 MiB machine with one fenced (bad) range and an overlapping bad entry. */
const MAP: HostMemoryRange[] = [
  { base: 0, length: 0x9fc00, type: 1 },
  { base: 0x9fc00, length: 0x400, type: 2 },
  { base: 0xf0000, length: 0x10000, type: 2 },
  { base: 0x100000, length: 0x700000, type: 1 }, // 1 MiB .. 8 MiB
  { base: 0x800000, length: 0x10000, type: 5 }, // fenced by the memory test
  { base: 0x810000, length: RAM - 0x810000 - 0x20000, type: 1 },
  { base: RAM - 0x20000, length: 0x20000, type: 2 }, // firmware tables
  { base: 0x1234567n, length: 0x100n, type: 5 }, // a bad entry overlapping a usable one (and unaligned)
  { base: 0xfffc0000n, length: 0x40000n, type: 2 },
];
const HYPERVISOR_AREA = { base: 0x100000, length: 0x200000, reason: 'hypervisor image' };

/** Every byte a frame must never come from. */
const FORBIDDEN: { base: number; end: number }[] = [
  { base: 0, end: 0x100000 }, // excluded first MiB (covers EBDA and BIOS)
  { base: 0x100000, end: 0x300000 }, // hypervisor
  { base: 0x800000, end: 0x810000 }, // bad
  { base: 0x1234000, end: 0x1235000 }, // bad, rounded outward
  { base: RAM - 0x20000, end: RAM },
];

function setup(exclude = [FIRST_MIB_EXCLUSION, HYPERVISOR_AREA]) {
  const mem = new PhysicalMemory(RAM, new Uint8Array(128 * KiB));
  const alloc = new HostFrameAllocator(mem, { memoryMap: MAP, exclude });
  return { mem, alloc };
}

/** Small deterministic PRNG for the property loops. */
function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

const isZero = (mem: PhysicalMemory, base: number, length: number): boolean => mem.ram.subarray(base, base + length).every((b) => b === 0);

describe('HostFrameAllocator', () => {
  it('derives the allocatable set from usable ranges minus fenced, reserved and excluded ones', () => {
    const { alloc } = setup();
    expect(alloc.allocatableRanges()).toEqual([
      { base: 0x300000, length: 0x500000 },
      { base: 0x810000, length: 0x1234000 - 0x810000 },
      { base: 0x1235000, length: RAM - 0x20000 - 0x1235000 },
    ]);
    expect(alloc.totalFrames).toBe((0x500000 + (0x1234000 - 0x810000) + (RAM - 0x20000 - 0x1235000)) / FRAME_SIZE);
    expect(alloc.freeFrames).toBe(alloc.totalFrames);
    expect(alloc.usedFrames).toBe(0);
  });

  it('hands out frames lowest address first, deterministically', () => {
    const a = setup().alloc;
    const b = setup().alloc;
    expect(a.allocate(3, { owner: 'vm1:ept' })).toEqual([0x300000, 0x301000, 0x302000]);
    expect(a.allocateContiguous(4, { owner: 'vcpu0:state', align: 0x10000 })).toBe(0x310000);
    expect(a.allocate(2, { owner: 'vm1:ept' })).toEqual([0x303000, 0x304000]);
    expect(a.allocateLargePages(2, { owner: 'vm1:ram' })).toEqual([0x400000, 0x600000]);
    // 8 MiB..8 MiB+64 KiB is fenced, so the next 2 MiB-aligned run is at 10 MiB.
    expect(a.allocateLargePages(1, { owner: 'vm1:ram' })).toEqual([0xa00000]);
    // The same calls on a second allocator give the same answers.
    b.allocate(3, { owner: 'vm1:ept' });
    b.allocateContiguous(4, { owner: 'vcpu0:state', align: 0x10000 });
    b.allocate(2, { owner: 'vm1:ept' });
    b.allocateLargePages(2, { owner: 'vm1:ram' });
    b.allocateLargePages(1, { owner: 'vm1:ram' });
    expect(b.allocations()).toEqual(a.allocations());
    expect(b.freeRanges()).toEqual(a.freeRanges());
  });

  it('allocate(count, {align}) aligns every frame; freed frames are reused lowest first', () => {
    const { alloc } = setup();
    expect(alloc.allocate(3, { align: 0x10000 })).toEqual([0x300000, 0x310000, 0x320000]);
    const f = alloc.allocate(1);
    expect(f).toEqual([0x301000]);
    alloc.free(0x310000);
    expect(alloc.allocate(2)).toEqual([0x302000, 0x303000]);
    expect(alloc.allocate(1, { owner: 'x' })).toEqual([0x304000]);
    alloc.free(0x302000, 3);
    expect(alloc.allocate(1)).toEqual([0x302000]);
  });

  it('zeroes every frame it hands out', () => {
    const { mem, alloc } = setup();
    const [f] = alloc.allocate(1);
    mem.ram.fill(0xa5, f!, f! + FRAME_SIZE);
    alloc.free(f!);
    expect(alloc.allocate(1)).toEqual([f]);
    expect(isZero(mem, f!, FRAME_SIZE)).toBe(true);
    // Large pages too, and the zeroing goes through PhysicalMemory.write (code-invalidation listeners see it).
    const writes: [number, number][] = [];
    mem.onHostWrite((a, l) => writes.push([a, l]));
    mem.ram.fill(0x5a, 0x400000, 0x600000);
    const [lp] = alloc.allocateLargePages(1);
    expect(lp).toBe(0x400000);
    expect(isZero(mem, 0x400000, LARGE_PAGE_SIZE)).toBe(true);
    expect(writes.reduce((s, [, l]) => s + l, 0)).toBe(LARGE_PAGE_SIZE);
    expect(writes[0]![0]).toBe(0x400000);
  });

  it('never returns fenced, reserved or excluded frames, nor one frame twice (property loop)', () => {
    for (const seed of [1, 2, 3, 42, 1234]) {
      const { mem, alloc } = setup();
      const rnd = lcg(seed);
      const owned = new Map<number, string>(); // frame -> owner
      const live: { base: number; frames: number[] }[] = [];
      const problems: string[] = [];
      const check = (frames: number[], owner: string) => {
        for (const f of frames) {
          const at = `seed ${seed}: frame 0x${f.toString(16)}`;
          if (f % FRAME_SIZE !== 0) problems.push(`${at} unaligned`);
          if (FORBIDDEN.some((bad) => f + FRAME_SIZE > bad.base && f < bad.end)) problems.push(`${at} inside a forbidden range`);
          if (!alloc.isAllocatable(f)) problems.push(`${at} not allocatable`);
          if (owned.has(f)) problems.push(`${at} handed out twice`);
          if (!isZero(mem, f, FRAME_SIZE)) problems.push(`${at} not zeroed`);
          owned.set(f, owner);
          mem.ram.fill(0xcc, f, f + FRAME_SIZE); // dirty it so re-use must zero again
        }
      };
      for (let step = 0; step < 400; step++) {
        const r = rnd();
        const owner = `vm${Math.floor(rnd() * 3)}:${['ram', 'ept', 'state'][Math.floor(rnd() * 3)]}`;
        try {
          if (r < 0.35) {
            const n = 1 + Math.floor(rnd() * 40);
            const frames = alloc.allocate(n, { owner, align: rnd() < 0.2 ? 0x4000 : FRAME_SIZE });
            expect(frames).toHaveLength(n);
            expect([...frames].sort((a, b) => a - b)).toEqual(frames);
            check(frames, owner);
            for (const f of frames) live.push({ base: f, frames: [f] });
          } else if (r < 0.55) {
            const n = 1 + Math.floor(rnd() * 300);
            const base = alloc.allocateContiguous(n, { owner, align: rnd() < 0.3 ? LARGE_PAGE_SIZE : FRAME_SIZE });
            const frames = Array.from({ length: n }, (_, i) => base + i * FRAME_SIZE);
            check(frames, owner);
            live.push({ base, frames });
          } else if (r < 0.65) {
            const bases = alloc.allocateLargePages(1 + Math.floor(rnd() * 2), { owner });
            for (const b of bases) {
              expect(b % LARGE_PAGE_SIZE).toBe(0);
              const frames = Array.from({ length: 512 }, (_, i) => b + i * FRAME_SIZE);
              check(frames, owner);
              live.push({ base: b, frames });
            }
          } else if (live.length > 0) {
            const [victim] = live.splice(Math.floor(rnd() * live.length), 1);
            alloc.free(victim!.base, victim!.frames.length);
            for (const f of victim!.frames) owned.delete(f);
          }
        } catch (err) {
          expect(err).toBeInstanceOf(FrameAllocatorError);
          expect((err as Error).message).toMatch(/cannot allocate .* for 'vm\d:(ram|ept|state)'/);
        }
        // Accounting stays consistent.
        expect(alloc.usedFrames).toBe(owned.size);
        expect(alloc.usedFrames + alloc.freeFrames).toBe(alloc.totalFrames);
        if (step % 10 !== 0) continue;
        const byOwner: Record<string, number> = {};
        for (const o of owned.values()) byOwner[o] = (byOwner[o] ?? 0) + 1;
        expect(alloc.usage().byOwner).toEqual(Object.fromEntries(Object.entries(byOwner).sort(([a], [b]) => (a < b ? -1 : 1))));
        if (step % 50 === 0) for (const [f, o] of owned) if (alloc.ownerOf(f) !== o) problems.push(`seed ${seed}: ownerOf(0x${f.toString(16)}) is not '${o}'`);
      }
      expect(problems).toEqual([]);
      expect(owned.size).toBeGreaterThan(1000);
    }
  });

  it('accounts per owner and frees by owner', () => {
    const { alloc } = setup();
    alloc.allocate(3, { owner: 'vm1:ept' });
    alloc.allocateLargePages(1, { owner: 'vm1:ram' });
    alloc.allocate(1, { owner: 'vcpu0:state' });
    alloc.allocate(2, { owner: 'vm1:ept' });
    expect(alloc.usage()).toEqual({
      totalFrames: alloc.totalFrames,
      freeFrames: alloc.totalFrames - 518,
      usedFrames: 518,
      byOwner: { 'vcpu0:state': 1, 'vm1:ept': 5, 'vm1:ram': 512 },
    });
    expect(alloc.ownerOf(0x300000)).toBe('vm1:ept');
    expect(alloc.ownerOf(0x400000 + 0x1234)).toBe('vm1:ram');
    expect(alloc.ownerOf(0x700000)).toBeNull();
    expect(alloc.allocations('vm1:ept')).toEqual([
      { base: 0x300000, length: 0x3000, owner: 'vm1:ept' },
      { base: 0x304000, length: 0x2000, owner: 'vm1:ept' },
    ]);
    expect(alloc.freeOwner('vm1:ept')).toBe(5);
    expect(alloc.usage().byOwner).toEqual({ 'vcpu0:state': 1, 'vm1:ram': 512 });
    expect(alloc.freeOwner('nobody')).toBe(0);
  });

  it('fails clearly on exhaustion, naming the request, and changes nothing', () => {
    const { alloc } = setup();
    const before = alloc.saveState();
    expect(() => alloc.allocateContiguous(0x2000, { owner: 'vm1:ram' })).toThrow(
      /^cannot allocate 8192 contiguous frames \(0x2000000 bytes\) for 'vm1:ram': no free run fits \(\d+ of \d+ frames free in 3 runs, largest run 0x[0-9a-f]+ bytes at that alignment\)$/,
    );
    expect(() => alloc.allocate(alloc.totalFrames + 1, { owner: 'vm2:ram' })).toThrow(
      new RegExp(`^cannot allocate ${alloc.totalFrames + 1} frames for 'vm2:ram': only ${alloc.totalFrames} available`),
    );
    expect(() => alloc.allocateLargePages(100, { owner: 'vm3:ram' })).toThrow(/^cannot allocate 100 2 MiB pages for 'vm3:ram': only \d+ free 2 MiB-aligned runs/);
    expect(() => alloc.allocate(1, { owner: 'vm1:ept', align: 0x3000 })).toThrow(/align 12288 must be a power of two >= 4096/);
    expect(() => alloc.allocate(0, { owner: 'vm1:ept' })).toThrow(/allocate\(0\) for 'vm1:ept': count must be a positive integer/);
    expect(alloc.saveState()).toEqual(before);
    // Fill it completely, then a single frame fails.
    alloc.allocate(alloc.totalFrames, { owner: 'hog' });
    expect(alloc.freeFrames).toBe(0);
    expect(() => alloc.allocate(1, { owner: 'vm1:ept' })).toThrow("cannot allocate 1 frame for 'vm1:ept': only 0 available (0 of");
  });

  it('rejects bad frees', () => {
    const { alloc } = setup();
    const [f] = alloc.allocate(1);
    expect(() => alloc.free(f! + 8)).toThrow(/not a 4 KiB-aligned frame address/);
    expect(() => alloc.free(f!, 2)).toThrow(`free(0x300000, 2): frame 0x301000 is not allocated (double free?)`);
    alloc.free(f!);
    expect(() => alloc.free(f!)).toThrow(/frame 0x300000 is not allocated \(double free\?\)/);
    expect(() => alloc.free(0x800000)).toThrow(/frame 0x800000 is not allocated \(not allocator memory\)/);
    expect(alloc.freeFrames).toBe(alloc.totalFrames);
  });

  it('supports freeing part of a contiguous run', () => {
    const { alloc } = setup();
    const base = alloc.allocateContiguous(8, { owner: 'vm1:ram' });
    alloc.free(base + 2 * FRAME_SIZE, 3);
    expect(alloc.allocations()).toEqual([
      { base, length: 2 * FRAME_SIZE, owner: 'vm1:ram' },
      { base: base + 5 * FRAME_SIZE, length: 3 * FRAME_SIZE, owner: 'vm1:ram' },
    ]);
    expect(alloc.allocate(3, { owner: 'vm1:ept' })).toEqual([base + 0x2000, base + 0x3000, base + 0x4000]);
  });

  it('refuses a map claiming usable memory the machine does not have', () => {
    const mem = new PhysicalMemory(RAM, new Uint8Array(128 * KiB));
    expect(() => new HostFrameAllocator(mem, { memoryMap: [{ base: 0x100000, length: 64 * MiB, type: 1 }] })).toThrow(
      `memoryMap[0] says usable, but 0x2000000-0x40fffff is not RAM in this machine`,
    );
    // The legacy hole and BIOS alias are not RAM either.
    expect(() => new HostFrameAllocator(mem, { memoryMap: [{ base: 0, length: 2 * MiB, type: 1 }] })).toThrow(/0xa0000-0xbffff is not RAM/);
    expect(() => new HostFrameAllocator(mem, { memoryMap: [{ base: -1, length: 10, type: 1 }] })).toThrow(/memoryMap\[0\]\.base -1/);
  });

  it('round-trips its state and rejects bad records with the field name', () => {
    const { alloc } = setup();
    alloc.allocate(5, { owner: 'vm1:ept' });
    alloc.allocateLargePages(2, { owner: 'vm1:ram' });
    alloc.free(0x301000);
    const saved = structuredClone(alloc.saveState()) as StateRecord;
    const savedAllocations = alloc.allocations();
    const next = alloc.allocate(2, { owner: 'vm1:ept' });

    const other = setup().alloc;
    other.allocate(7, { owner: 'junk' });
    other.restoreState(saved);
    expect(other.allocations()).toEqual(savedAllocations);
    expect(other.usage().byOwner).toEqual({ 'vm1:ept': 4, 'vm1:ram': 1024 });
    // It continues exactly where the saved allocator would have.
    expect(other.allocate(2, { owner: 'vm1:ept' })).toEqual(next);

    const bad = (mutate: (s: Record<string, unknown>) => void): StateRecord => {
      const s = structuredClone(saved) as Record<string, unknown>;
      mutate(s);
      return s as StateRecord;
    };
    const fresh = () => setup().alloc;
    expect(() => fresh().restoreState(bad((s) => (s['version'] = 9)))).toThrow(new StateError('frame-allocator', 'version', 'expected 1, got number'));
    expect(() => fresh().restoreState(bad((s) => ((s['allocations'] as Record<string, unknown>[])[1]!['base'] = 0x300001)))).toThrow(
      "frame-allocator: state field 'allocations[1].base': expected 4 KiB-aligned address, got 3145729",
    );
    expect(() => fresh().restoreState(bad((s) => ((s['allocations'] as Record<string, unknown>[])[0]!['owner'] = 7)))).toThrow(
      "state field 'allocations[0].owner'",
    );
    expect(() => fresh().restoreState(bad((s) => ((s['allocations'] as Record<string, unknown>[])[0]!['base'] = 0x800000)))).toThrow(
      "frame-allocator: state field 'allocations[0].base': 0x800000+0x1000 is not inside allocatable memory",
    );
    expect(() => fresh().restoreState(bad((s) => ((s['allocations'] as Record<string, unknown>[])[1]!['base'] = 0x300000)))).toThrow(
      /state field 'allocations\[1\]\.base': 0x300000 overlaps/,
    );
    // An allocator built from a different map refuses the record.
    const mem = new PhysicalMemory(RAM, new Uint8Array(128 * KiB));
    const different = new HostFrameAllocator(mem, { memoryMap: MAP, exclude: [FIRST_MIB_EXCLUSION] });
    expect(() => different.restoreState(saved)).toThrow("frame-allocator: state field 'allocatable': saved with a different memory map or exclusions than this allocator");
  });
});
