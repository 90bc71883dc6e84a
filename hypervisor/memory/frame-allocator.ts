/**
 * Host-physical frame allocator for the micro-hypervisor.
 *
 * The firmware's lightweight OS hands the hypervisor an e820-style memory map.
 * Frames are handed out only from type-1 (usable) ranges, never from a range
 * any non-usable entry touches (reserved, ACPI, bad/fenced type 5, unknown
 * types), and never from the explicitly excluded ranges (the first 1 MiB, the
 * hypervisor's own image and stacks, ...). Every frame handed out is zeroed
 * through the machine's PhysicalMemory, allocation is lowest-address-first and
 * therefore deterministic, and every allocation carries an owner tag
 * ('vm1:ram', 'vm1:ept', 'vcpu0:state') for accounting.
 */
import { checkVersion, StateError, type Snapshottable, type StateRecord, type StateValue } from '../../machine/state.js';

export const FRAME_SIZE = 4096;
export const LARGE_PAGE_SIZE = 2 * 1024 * 1024;
export const FRAMES_PER_LARGE_PAGE = LARGE_PAGE_SIZE / FRAME_SIZE;

export const E820_USABLE = 1;
export const E820_RESERVED = 2;
export const E820_BAD = 5;

/** One memory-map entry as handed off (boot-info E820Entry and Multiboot MemoryMapEntry both fit). */
export interface HostMemoryRange {
  readonly base: number | bigint;
  readonly length: number | bigint;
  /** 1 usable, 2 reserved, 3 ACPI reclaimable, 4 ACPI NVS, 5 bad (fenced); anything but 1 is never allocated. */
  readonly type: number;
}

/** A range the allocator must never hand out even though the map says usable. */
export interface ExcludedRange {
  readonly base: number | bigint;
  readonly length: number | bigint;
  /** Shown in errors and accounting, e.g. 'first 1 MiB', 'hypervisor image'. */
  readonly reason?: string;
}

/** The conventional exclusion of real-mode memory (IVT, BDA, EBDA, option ROMs, BIOS). */
export const FIRST_MIB_EXCLUSION: ExcludedRange = { base: 0, length: 0x100000, reason: 'first 1 MiB' };

/** What the allocator needs from the machine: zeroing, and optionally the region layout to verify the map. */
export interface FrameMemory {
  write(addr: number, data: Uint8Array): void;
  /** When present: whether a range already holds only zeros (then it is not written). */
  isZero?(addr: number, length: number): boolean;
  /** When present (PhysicalMemory), every usable byte must lie in a 'ram' or 'bad-ram' region. */
  readonly regions?: readonly { readonly kind: string; readonly base: number; readonly size: number }[];
}

export interface HostFrameAllocatorOptions {
  readonly memoryMap: readonly HostMemoryRange[];
  readonly exclude?: readonly ExcludedRange[];
  readonly snapshotId?: string;
}

export interface AllocateOptions {
  /** Accounting tag, e.g. 'vm1:ram'. Default 'untagged'. */
  readonly owner?: string;
  /** Byte alignment of each frame (allocate) or of the run (allocateContiguous); a power of two >= 4096. Default 4096. */
  readonly align?: number;
}

export interface FrameAllocation {
  readonly base: number;
  readonly length: number;
  readonly owner: string;
}

export interface FrameUsage {
  readonly totalFrames: number;
  readonly freeFrames: number;
  readonly usedFrames: number;
  /** Used frames per owner tag, owners sorted by name. */
  readonly byOwner: Readonly<Record<string, number>>;
}

export class FrameAllocatorError extends Error {
  override readonly name = 'FrameAllocatorError';
}

interface Extent {
  base: number;
  end: number;
}

interface Alloc extends Extent {
  owner: string;
}

const hex = (n: number): string => `0x${n.toString(16)}`;

function toNumber(v: number | bigint, what: string): number {
  if (typeof v === 'bigint') {
    if (v < 0n || v > BigInt(Number.MAX_SAFE_INTEGER)) throw new FrameAllocatorError(`${what} ${v} is outside the supported address range`);
    return Number(v);
  }
  if (!Number.isSafeInteger(v) || v < 0) throw new FrameAllocatorError(`${what} ${v} is not a non-negative integer`);
  return v;
}

const alignUp = (v: number, a: number): number => Math.ceil(v / a) * a;
const alignDown = (v: number, a: number): number => Math.floor(v / a) * a;

/** Sorted, merged union of extents. */
function union(list: Extent[]): Extent[] {
  const sorted = list.filter((e) => e.end > e.base).sort((a, b) => a.base - b.base);
  const out: Extent[] = [];
  for (const e of sorted) {
    const last = out[out.length - 1];
    if (last && e.base <= last.end) last.end = Math.max(last.end, e.end);
    else out.push({ base: e.base, end: e.end });
  }
  return out;
}

/** a minus b (both sorted and disjoint). */
function subtract(a: Extent[], b: Extent[]): Extent[] {
  const out: Extent[] = [];
  for (const e of a) {
    let cur = e.base;
    for (const c of b) {
      if (c.end <= cur || c.base >= e.end) continue;
      if (c.base > cur) out.push({ base: cur, end: c.base });
      cur = Math.max(cur, c.end);
      if (cur >= e.end) break;
    }
    if (cur < e.end) out.push({ base: cur, end: e.end });
  }
  return out;
}

export class HostFrameAllocator implements Snapshottable {
  readonly snapshotId: string;
  readonly stateVersion = 1;
  /** The allocatable set: usable, page-rounded inward, minus everything else. Sorted and disjoint. */
  private readonly allocatable: readonly Extent[];
  private freeList: Extent[];
  /** Allocated extents, sorted by base, disjoint; adjacent extents of one owner are merged. */
  private allocs: Alloc[] = [];
  private static readonly ZERO = new Uint8Array(64 * 1024);

  constructor(
    private readonly memory: FrameMemory,
    options: HostFrameAllocatorOptions,
  ) {
    this.snapshotId = options.snapshotId ?? 'frame-allocator';
    const usable: Extent[] = [];
    const fenced: Extent[] = [];
    options.memoryMap.forEach((r, i) => {
      const base = toNumber(r.base, `memoryMap[${i}].base`);
      const length = toNumber(r.length, `memoryMap[${i}].length`);
      if (!Number.isSafeInteger(base + length)) throw new FrameAllocatorError(`memoryMap[${i}] ${hex(base)}+${hex(length)} ends outside the supported address range`);
      if (length === 0) return;
      // Usable ranges shrink inward to whole frames; everything else grows outward.
      if (r.type === E820_USABLE) usable.push({ base: alignUp(base, FRAME_SIZE), end: alignDown(base + length, FRAME_SIZE) });
      else fenced.push({ base: alignDown(base, FRAME_SIZE), end: alignUp(base + length, FRAME_SIZE) });
    });
    (options.exclude ?? []).forEach((r, i) => {
      const base = toNumber(r.base, `exclude[${i}].base`);
      const length = toNumber(r.length, `exclude[${i}].length`);
      fenced.push({ base: alignDown(base, FRAME_SIZE), end: alignUp(base + length, FRAME_SIZE) });
    });
    this.allocatable = subtract(union(usable), union(fenced));
    this.verifyAgainstRam(options.memoryMap);
    this.freeList = this.allocatable.map((e) => ({ ...e }));
  }

  private verifyAgainstRam(map: readonly HostMemoryRange[]): void {
    const regions = this.memory.regions;
    if (!regions) return;
    const ram = union(regions.filter((r) => r.kind === 'ram' || r.kind === 'bad-ram').map((r) => ({ base: r.base, end: r.base + r.size })));
    const missing = subtract(this.allocatable.map((e) => ({ ...e })), ram)[0];
    if (!missing) return;
    const idx = map.findIndex((r) => r.type === E820_USABLE && Number(r.base) <= missing.base && missing.base < Number(r.base) + Number(r.length));
    throw new FrameAllocatorError(
      `memoryMap[${idx}] says usable, but ${hex(missing.base)}-${hex(missing.end - 1)} is not RAM in this machine`,
    );
  }

  // ---- allocation ----

  /**
   * `count` 4 KiB frames, each at a multiple of `align`, lowest addresses first,
   * not necessarily contiguous. All or nothing; every frame is zeroed.
   */
  allocate(count: number, options: AllocateOptions = {}): number[] {
    const { owner, align } = this.checkRequest('allocate', count, options);
    const picks: number[] = [];
    for (const e of this.freeList) {
      for (let a = alignUp(e.base, align); a + FRAME_SIZE <= e.end && picks.length < count; a += align) picks.push(a);
      if (picks.length === count) break;
    }
    if (picks.length < count) {
      throw new FrameAllocatorError(
        `cannot allocate ${count} frame${count === 1 ? '' : 's'}${align > FRAME_SIZE ? ` aligned to ${hex(align)}` : ''} for '${owner}': ` +
          `only ${picks.length} available (${this.describeFree()})`,
      );
    }
    // Take consecutive picks as runs.
    let runStart = picks[0]!;
    let runEnd = runStart + FRAME_SIZE;
    for (let i = 1; i <= picks.length; i++) {
      const p = picks[i];
      if (p !== undefined && p === runEnd) {
        runEnd += FRAME_SIZE;
        continue;
      }
      this.take(runStart, runEnd, owner);
      if (p !== undefined) {
        runStart = p;
        runEnd = p + FRAME_SIZE;
      }
    }
    return picks;
  }

  /** One physically contiguous run of `count` frames starting at a multiple of `align`; returns its base. Zeroed. */
  allocateContiguous(count: number, options: AllocateOptions = {}): number {
    const { owner, align } = this.checkRequest('allocateContiguous', count, options);
    const bytes = count * FRAME_SIZE;
    for (const e of this.freeList) {
      const a = alignUp(e.base, align);
      if (a + bytes <= e.end) {
        this.take(a, a + bytes, owner);
        return a;
      }
    }
    throw new FrameAllocatorError(
      `cannot allocate ${count} contiguous frame${count === 1 ? '' : 's'} (${hex(bytes)} bytes)${align > FRAME_SIZE ? ` aligned to ${hex(align)}` : ''} for '${owner}': ` +
        `no free run fits (${this.describeFree()}, largest run ${hex(this.largestRun(align))} bytes at that alignment)`,
    );
  }

  /** `count` 2 MiB-aligned 2 MiB runs (each usable as one EPT large page), lowest first, not necessarily adjacent. Zeroed. */
  allocateLargePages(count: number, options: { owner?: string } = {}): number[] {
    const { owner } = this.checkRequest('allocateLargePages', count, { owner: options.owner, align: LARGE_PAGE_SIZE });
    const picks: number[] = [];
    for (const e of this.freeList) {
      for (let a = alignUp(e.base, LARGE_PAGE_SIZE); a + LARGE_PAGE_SIZE <= e.end && picks.length < count; a += LARGE_PAGE_SIZE) picks.push(a);
      if (picks.length === count) break;
    }
    if (picks.length < count) {
      throw new FrameAllocatorError(
        `cannot allocate ${count} 2 MiB page${count === 1 ? '' : 's'} for '${owner}': only ${picks.length} free 2 MiB-aligned runs (${this.describeFree()})`,
      );
    }
    for (const p of picks) this.take(p, p + LARGE_PAGE_SIZE, owner);
    return picks;
  }

  /** Return `count` frames starting at `base`; all of them must be allocated (any owner). */
  free(base: number, count = 1): void {
    if (!Number.isSafeInteger(base) || base < 0 || base % FRAME_SIZE !== 0) throw new FrameAllocatorError(`free(${hex(base)}): address is not a 4 KiB-aligned frame address`);
    if (!Number.isSafeInteger(count) || count <= 0) throw new FrameAllocatorError(`free(${hex(base)}, ${count}): count must be a positive integer`);
    const end = base + count * FRAME_SIZE;
    // Verify the whole range is allocated before changing anything.
    let cur = base;
    for (const a of this.allocs) {
      if (a.end <= cur) continue;
      if (a.base > cur) break;
      cur = a.end;
      if (cur >= end) break;
    }
    if (cur < end) {
      throw new FrameAllocatorError(`free(${hex(base)}, ${count}): frame ${hex(cur)} is not allocated${this.isAllocatable(cur) ? ' (double free?)' : ' (not allocator memory)'}`);
    }
    this.allocs = this.cut(this.allocs, base, end);
    this.insertFree(base, end);
  }

  /** Free everything tagged `owner`; returns the number of frames released. */
  freeOwner(owner: string): number {
    let frames = 0;
    const keep: Alloc[] = [];
    for (const a of this.allocs) {
      if (a.owner === owner) {
        frames += (a.end - a.base) / FRAME_SIZE;
        this.insertFree(a.base, a.end);
      } else keep.push(a);
    }
    this.allocs = keep;
    return frames;
  }

  // ---- accounting ----

  get totalFrames(): number {
    return this.allocatable.reduce((s, e) => s + (e.end - e.base) / FRAME_SIZE, 0);
  }

  get freeFrames(): number {
    return this.freeList.reduce((s, e) => s + (e.end - e.base) / FRAME_SIZE, 0);
  }

  get usedFrames(): number {
    return this.allocs.reduce((s, e) => s + (e.end - e.base) / FRAME_SIZE, 0);
  }

  usage(): FrameUsage {
    const byOwner: Record<string, number> = {};
    for (const a of [...this.allocs].sort((x, y) => (x.owner < y.owner ? -1 : x.owner > y.owner ? 1 : x.base - y.base))) {
      byOwner[a.owner] = (byOwner[a.owner] ?? 0) + (a.end - a.base) / FRAME_SIZE;
    }
    return { totalFrames: this.totalFrames, freeFrames: this.freeFrames, usedFrames: this.usedFrames, byOwner };
  }

  /** Owner tag of the frame containing `addr`, or null when it is free or not allocator memory. */
  ownerOf(addr: number): string | null {
    const a = this.findAlloc(addr);
    return a ? a.owner : null;
  }

  /** True when `addr` lies in memory this allocator manages (free or allocated). */
  isAllocatable(addr: number): boolean {
    return this.allocatable.some((e) => addr >= e.base && addr < e.end);
  }

  /** Allocated extents, lowest first (adjacent frames of one owner are reported as one extent). */
  allocations(owner?: string): FrameAllocation[] {
    return this.allocs.filter((a) => owner === undefined || a.owner === owner).map((a) => ({ base: a.base, length: a.end - a.base, owner: a.owner }));
  }

  /** Free extents, lowest first. */
  freeRanges(): { base: number; length: number }[] {
    return this.freeList.map((e) => ({ base: e.base, length: e.end - e.base }));
  }

  /** The allocatable set derived from the map and the exclusions, lowest first. */
  allocatableRanges(): { base: number; length: number }[] {
    return this.allocatable.map((e) => ({ base: e.base, length: e.end - e.base }));
  }

  // ---- snapshot ----

  saveState(): StateRecord {
    return {
      version: this.stateVersion,
      allocatable: this.allocatable.map((e) => [e.base, e.end - e.base]),
      allocations: this.allocs.map((a) => ({ base: a.base, length: a.end - a.base, owner: a.owner })),
    };
  }

  /**
   * Restores the allocation table. Frame contents are not touched (RAM is
   * restored separately). The allocator must have been built from the same
   * memory map and exclusions as the one that saved the state.
   */
  restoreState(state: StateRecord): void {
    const id = this.snapshotId;
    checkVersion(state, this.stateVersion, id);
    const ranges = state['allocatable'];
    if (!Array.isArray(ranges)) throw new StateError(id, 'allocatable', 'expected array of [base, length]');
    const mine = this.allocatable.map((e) => [e.base, e.end - e.base]);
    const same =
      ranges.length === mine.length &&
      ranges.every((r, i) => Array.isArray(r) && r.length === 2 && r[0] === mine[i]![0] && r[1] === mine[i]![1]);
    if (!same) throw new StateError(id, 'allocatable', 'saved with a different memory map or exclusions than this allocator');
    const list = state['allocations'];
    if (!Array.isArray(list)) throw new StateError(id, 'allocations', 'expected array');
    const parsed: Alloc[] = [];
    list.forEach((v: StateValue, i) => {
      const f = `allocations[${i}]`;
      if (v === null || typeof v !== 'object' || Array.isArray(v) || v instanceof Uint8Array) throw new StateError(id, f, 'expected record');
      const base = v['base'];
      const length = v['length'];
      const owner = v['owner'];
      if (typeof base !== 'number' || !Number.isSafeInteger(base) || base < 0 || base % FRAME_SIZE !== 0) throw new StateError(id, `${f}.base`, `expected 4 KiB-aligned address, got ${String(base)}`);
      if (typeof length !== 'number' || !Number.isSafeInteger(length) || length <= 0 || length % FRAME_SIZE !== 0) throw new StateError(id, `${f}.length`, `expected positive multiple of 4 KiB, got ${String(length)}`);
      if (typeof owner !== 'string') throw new StateError(id, `${f}.owner`, `expected string, got ${typeof owner}`);
      if (!this.allocatable.some((e) => base >= e.base && base + length <= e.end)) throw new StateError(id, `${f}.base`, `${hex(base)}+${hex(length)} is not inside allocatable memory`);
      const prev = parsed[parsed.length - 1];
      if (prev && base < prev.end) throw new StateError(id, `${f}.base`, `${hex(base)} overlaps or precedes the previous allocation ending at ${hex(prev.end)}`);
      parsed.push({ base, end: base + length, owner });
    });
    this.allocs = parsed;
    this.freeList = subtract(this.allocatable.map((e) => ({ ...e })), parsed);
  }

  // ---- internals ----

  private checkRequest(op: string, count: number, options: AllocateOptions): { owner: string; align: number } {
    const owner = options.owner ?? 'untagged';
    const align = options.align ?? FRAME_SIZE;
    if (!Number.isSafeInteger(count) || count <= 0) throw new FrameAllocatorError(`${op}(${count}) for '${owner}': count must be a positive integer`);
    if (!Number.isSafeInteger(align) || align < FRAME_SIZE || 2 ** Math.round(Math.log2(align)) !== align) {
      throw new FrameAllocatorError(`${op}(${count}) for '${owner}': align ${align} must be a power of two >= 4096`);
    }
    return { owner, align };
  }

  /** Move [base, end) (inside one free extent) to the allocations and zero it. */
  private take(base: number, end: number, owner: string): void {
    const i = this.freeList.findIndex((e) => e.base <= base && end <= e.end);
    const e = this.freeList[i];
    if (!e) throw new FrameAllocatorError(`internal: ${hex(base)}-${hex(end)} is not free`);
    const pieces: Extent[] = [];
    if (e.base < base) pieces.push({ base: e.base, end: base });
    if (end < e.end) pieces.push({ base: end, end: e.end });
    this.freeList.splice(i, 1, ...pieces);
    this.insertAlloc({ base, end, owner });
    for (let a = base; a < end; a += HostFrameAllocator.ZERO.length) {
      const n = Math.min(HostFrameAllocator.ZERO.length, end - a);
      // Never-used RAM is zero already: skipping it saves the writes and the host pages they commit.
      if (this.memory.isZero?.(a, n)) continue;
      this.memory.write(a, n === HostFrameAllocator.ZERO.length ? HostFrameAllocator.ZERO : HostFrameAllocator.ZERO.subarray(0, n));
    }
  }

  private insertAlloc(n: Alloc): void {
    const i = this.lowerBound(this.allocs, n.base);
    const prev = this.allocs[i - 1];
    const next = this.allocs[i];
    if (prev && prev.end === n.base && prev.owner === n.owner) {
      prev.end = n.end;
      if (next && next.base === prev.end && next.owner === prev.owner) {
        prev.end = next.end;
        this.allocs.splice(i, 1);
      }
    } else if (next && next.base === n.end && next.owner === n.owner) {
      next.base = n.base;
    } else {
      this.allocs.splice(i, 0, n);
    }
  }

  private insertFree(base: number, end: number): void {
    const i = this.lowerBound(this.freeList, base);
    const prev = this.freeList[i - 1];
    const next = this.freeList[i];
    if (prev && prev.end === base) {
      prev.end = end;
      if (next && next.base === end) {
        prev.end = next.end;
        this.freeList.splice(i, 1);
      }
    } else if (next && next.base === end) {
      next.base = base;
    } else {
      this.freeList.splice(i, 0, { base, end });
    }
  }

  /** Remove [base, end) from a sorted extent list, splitting extents at the edges. */
  private cut<T extends Extent>(list: T[], base: number, end: number): T[] {
    const out: T[] = [];
    for (const e of list) {
      if (e.end <= base || e.base >= end) {
        out.push(e);
        continue;
      }
      if (e.base < base) out.push({ ...e, end: base });
      if (e.end > end) out.push({ ...e, base: end });
    }
    return out;
  }

  /** First index whose base is >= `base`. */
  private lowerBound(list: readonly Extent[], base: number): number {
    let lo = 0;
    let hi = list.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (list[mid]!.base < base) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  private findAlloc(addr: number): Alloc | undefined {
    const i = this.lowerBound(this.allocs, addr + 1) - 1;
    const a = this.allocs[i];
    return a && addr >= a.base && addr < a.end ? a : undefined;
  }

  private largestRun(align: number): number {
    let best = 0;
    for (const e of this.freeList) best = Math.max(best, e.end - alignUp(e.base, align));
    return best;
  }

  private describeFree(): string {
    return `${this.freeFrames} of ${this.totalFrames} frames free in ${this.freeList.length} run${this.freeList.length === 1 ? '' : 's'}`;
  }
}
