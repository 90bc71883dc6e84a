/**
 * The frame allocator hands out zeroed frames without writing RAM that is zero already: a fresh
 * guest's 64 MiB are neither rewritten nor committed on the host, and a reused frame is still
 * zeroed, including one that is dirty in a single byte, on bad RAM, or partly zero.
 */
import { describe, expect, it } from 'vitest';
import { KiB, MiB, PhysicalMemory } from '../../machine/memory/physical-memory.js';
import { FRAME_SIZE, HostFrameAllocator, LARGE_PAGE_SIZE } from '../../hypervisor/memory/frame-allocator.js';

function setup() {
  const mem = new PhysicalMemory(32 * MiB, new Uint8Array(128 * KiB));
  let written = 0;
  const write = mem.write.bind(mem);
  mem.write = (addr, data) => {
    written += data.length;
    write(addr, data);
  };
  const alloc = new HostFrameAllocator(mem, { memoryMap: [{ base: 0x100000, length: 31 * MiB, type: 1 }] });
  return { mem, alloc, written: () => written };
}

const allZero = (mem: PhysicalMemory, base: number, length: number): boolean => mem.read(base, length).every((b) => b === 0);

describe('zeroing of allocated frames', () => {
  it('fresh RAM is not rewritten: 2 MiB pages and frames come out zero with no writes', () => {
    const { mem, alloc, written } = setup();
    const large = alloc.allocateLargePages(4);
    const small = alloc.allocate(16);
    expect(written()).toBe(0);
    for (const p of large) expect(allZero(mem, p, LARGE_PAGE_SIZE)).toBe(true);
    for (const f of small) expect(allZero(mem, f, FRAME_SIZE)).toBe(true);
  });

  it('a reused frame is zeroed again, whichever of its bytes were dirty', () => {
    const { mem, alloc, written } = setup();
    const frames = alloc.allocate(64);
    // Dirty a single byte in some frames (first, last, middle byte), leave others clean.
    const dirty = [frames[0]!, frames[5]! + FRAME_SIZE - 1, frames[33]! + 2048];
    for (const at of dirty) mem.writeBytes(at, Uint8Array.of(0x5a));
    for (const f of frames) alloc.free(f);
    const before = written();
    const again = alloc.allocate(64);
    expect(new Set(again)).toEqual(new Set(frames));
    for (const f of again) expect(allZero(mem, f, FRAME_SIZE)).toBe(true);
    // Only the 64 KiB chunks holding a dirty byte were written.
    expect(written() - before).toBeGreaterThan(0);
    expect(written() - before).toBeLessThanOrEqual(dirty.length * 64 * KiB);
  });

  it('isZero is false for anything that is not plain RAM of zeros', () => {
    const mem = new PhysicalMemory(4 * MiB, new Uint8Array(128 * KiB), [{ base: 0x200000, length: 0x1000, mode: 'stuck', seed: 1 }]);
    expect(mem.isZero(0x100000, 0x1000)).toBe(true);
    expect(mem.isZero(0x100000, 0)).toBe(false);
    expect(mem.isZero(0xf0000, 0x1000)).toBe(false); // the BIOS area is ROM, not RAM
    expect(mem.isZero(0x200000, 0x1000)).toBe(false); // bad RAM reads what it likes
    expect(mem.isZero(4 * MiB - 0x800, 0x1000)).toBe(false); // runs off the end of RAM
    mem.writeBytes(0x180fff, Uint8Array.of(1));
    expect(mem.isZero(0x180000, 0x1000)).toBe(false);
    expect(mem.isZero(0x181000, 0x1000)).toBe(true);
  });
});
