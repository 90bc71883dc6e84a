/**
 * The guest memory manager: one VM's guest-physical address space. Snapshot,
 * clones, the VM pool and migration all go through it.
 *
 * - A range table of guest RAM (GPA ranges), behind the VM's EPT tables.
 * - Population: "eager" maps every RAM page when the VM is built (2 MiB leaves
 *   where frames allow); "lazy" maps a page when the guest first touches it
 *   (an EPT violation), filling it from a content source (a snapshot) or zeros;
 *   prepopulate() maps a list of ranges in one call.
 * - Copy-on-write: a linked clone maps its base image's frames read-only; the
 *   first write to such a page is an EPT violation that copies it into a frame
 *   of the clone's own. Frames are reference-counted across VMs.
 * - Exact dirty logging: harvesting clears the EPT dirty bits *and* withdraws
 *   write permission from every host engine's TLB (a shootdown), so a page
 *   written again after a harvest is dirty again. 2 MiB leaves are split to
 *   4 KiB while logging is on. A lone reader that only wants a rate may
 *   sample instead (no shootdown, a lower bound).
 */
import { EptTables } from '../ept/ept-tables.js';
import { GuestPhysicalMemory } from '../ept/guest-physical.js';
import { eptWalk, formatEptFlags } from '../ept/ept-walk.js';
import { FRAME_SIZE, FrameAllocatorError, LARGE_PAGE_SIZE } from './frame-allocator.js';
import { GuestCpuMemory, type HostMemoryManager } from '../host-memory.js';
import { EptDirtyScanner } from './ept-dirty-scan.js';
import { OpenBusMappings } from '../open-bus.js';
import type { SecondLevelTranslation } from '../../machine/cpu/x86-cpu.js';
import { checkVersion, stateBoolean, stateNumber, stateNumbers, stateRecord, StateError, type StateRecord } from '../../machine/state.js';


export interface GpaRange {
  gpa: number;
  length: number;
}

/** Guest memory bytes by guest-physical address (snapshots, migration, clones). */
export interface MemoryRange {
  gpa: number;
  bytes: Uint8Array;
}

export type PopulateMode = 'eager' | 'lazy';

/** Where lazily populated pages get their bytes; null means zeros. */
export type PageSource = (gpaPage: number) => Uint8Array | null;

/** What an EPT violation on guest RAM turned out to be. */
export type ViolationResult = 'populated' | 'copied' | 'not-ram' | 'fault';

export interface GuestMemoryStats {
  ramBytes: number;
  /** RAM pages mapped to frames shared with other VMs (read-only, copy-on-write). */
  sharedBytes: number;
  /** RAM pages in frames of this VM's own. */
  privateBytes: number;
  /** RAM pages not populated yet (lazy). */
  unpopulatedBytes: number;
  eptViolations: number;
  lazyFaults: number;
  cowCopies: number;
  eptTableFrames: number;
}

const ZERO_PAGE = new Uint8Array(FRAME_SIZE);
const RWX = { r: true, w: true, x: true } as const;
const RX = { r: true, w: false, x: true } as const;

/**
 * A set of host frames holding a VM's memory image that clones map read-only
 * (a linked clone's base). Frames stay allocated while any clone maps them.
 */
export class SharedImage {
  /** GPA page -> HPA of the frame holding it. */
  readonly frames = new Map<number, number>();

  private constructor(
    private readonly host: HostMemoryManager,
    readonly name: string,
    readonly ramBytes: number,
  ) {}

  /** Copies `memory` into fresh frames (2 MiB runs where the RAM size allows). Pages not given are zero. */
  static create(host: HostMemoryManager, name: string, ramBytes: number, memory: readonly MemoryRange[]): SharedImage {
    const img = new SharedImage(host, name, ramBytes);
    const owner = `image:${name}`;
    const large = Math.floor(ramBytes / LARGE_PAGE_SIZE);
    const runs = large > 0 ? host.allocator.allocateLargePages(large, { owner }) : [];
    runs.forEach((hpa, i) => {
      for (let off = 0; off < LARGE_PAGE_SIZE; off += FRAME_SIZE) img.frames.set(i * LARGE_PAGE_SIZE + off, hpa + off);
    });
    const rest = (ramBytes - large * LARGE_PAGE_SIZE) / FRAME_SIZE;
    try {
      if (rest > 0) host.allocator.allocate(rest, { owner }).forEach((hpa, i) => img.frames.set(large * LARGE_PAGE_SIZE + i * FRAME_SIZE, hpa));
    } catch (e) {
      // Out of host RAM half way: the 2 MiB runs already taken go back (not by owner: another image may share the name).
      for (const hpa of runs) host.allocator.free(hpa, LARGE_PAGE_SIZE / FRAME_SIZE);
      throw e;
    }
    for (const hpa of img.frames.values()) host.retain(hpa);
    try {
      for (const r of memory) writeRange(host, r, (page) => img.frames.get(page));
    } catch (e) {
      img.release();
      throw e;
    }
    return img;
  }

  /** The image itself lets go of its frames; clones keep theirs until they are destroyed. */
  release(): void {
    for (const hpa of this.frames.values()) this.host.release(hpa);
    this.frames.clear();
  }
}

function writeRange(host: HostMemoryManager, r: MemoryRange, frameOf: (page: number) => number | undefined): void {
  for (let off = 0; off < r.bytes.length; ) {
    const gpa = r.gpa + off;
    const page = gpa - (gpa % FRAME_SIZE);
    const n = Math.min(r.bytes.length - off, page + FRAME_SIZE - gpa);
    const hpa = frameOf(page);
    if (hpa === undefined) throw new RangeError(`guest-physical 0x${gpa.toString(16)} is outside guest RAM`);
    host.memory.write(hpa + (gpa - page), r.bytes.subarray(off, off + n));
    off += n;
  }
}

export interface GuestMemoryOptions {
  populate?: PopulateMode;
  /** Lazy population fills pages from here (a snapshot's memory). */
  source?: PageSource;
  /** Map this image's frames read-only and copy on write (a linked clone). */
  base?: SharedImage;
  /** With `base`: ranges that get private frames from the start (the clone's private writable range). */
  privateRanges?: readonly GpaRange[];
  /**
   * Adopt a residentState() record: the EPT tables and frames already in host
   * RAM (live update, the same RAM in a new process). Nothing is allocated or copied.
   */
  adopt?: StateRecord;
}

/** The dirty-log reader of callers that name none. */
export const DEFAULT_DIRTY_READER: object = Object.freeze({ name: 'default dirty-log reader' });

export class GuestMemory {
  readonly ept: EptTables;
  readonly walkMemory: GuestCpuMemory;
  readonly secondLevel: SecondLevelTranslation;
  /** Inspection view: no A/D side effects. */
  readonly inspectMemory: GuestPhysicalMemory;
  readonly ranges: readonly GpaRange[];
  private readonly loader: GuestPhysicalMemory;
  /** RAM pages mapped to shared frames (copy-on-write): GPA page -> HPA. */
  private readonly shared = new Map<number, number>();
  /** Frames this VM holds a reference on (its own and shared ones), by GPA page; large runs by their first page. */
  private readonly held = new Map<number, { hpa: number; size: number }>();
  private source: PageSource | null;
  private logging = false;
  /**
   * Readers of the dirty log (migration, the behaviour observer, incremental restore), each with
   * the pages another reader's harvest collected from the EPT since its own last one: a harvest
   * clears the D bits for everyone, so it hands what it found to the others too.
   */
  private readonly dirtyReaders = new Map<object, Set<number>>();
  /**
   * A sampleDirty() cleared D bits without a shootdown: an engine may still hold write permission
   * for a page whose D bit is clear, so the log is not exact until the next shootdown.
   */
  private dirtyUnarmed = false;
  /** The fast EPT dirty-bit walk (made on the first harvest). */
  private dirtyScanner: EptDirtyScanner | null = null;
  /** Counts the default reader's startDirtyLog() and harvestDirty() calls (incremental restore's base check). */
  dirtyLogEpoch = 0;
  eptViolations = 0;
  lazyFaults = 0;
  cowCopies = 0;
  /** Called after mappings lose permissions: every host engine must drop its TLB (set by the hypervisor). */
  shootdown: () => void = () => {};
  /** Whether a host engine is inside a run (then CPU-side accesses must not remap pages themselves). */
  engineRunning: () => boolean = () => false;

  constructor(
    private readonly host: HostMemoryManager,
    readonly owner: string,
    readonly ramBytes: number,
    options: GuestMemoryOptions = {},
  ) {
    if (!Number.isSafeInteger(ramBytes) || ramBytes % FRAME_SIZE !== 0 || ramBytes < 2 * 1024 * 1024) throw new RangeError(`${owner}: guest RAM ${ramBytes} must be a multiple of 4 KiB and at least 2 MiB`);
    this.ranges = [{ gpa: 0, length: ramBytes }];
    this.ept = options.adopt
      ? EptTables.restore(host.memory, host.allocator, { owner: `${owner}:ept` }, stateRecord(options.adopt, 'ept', `${owner} memory`))
      : new EptTables(host.memory, host.allocator, { owner: `${owner}:ept` });
    this.source = options.source ?? null;
    this.loader = new GuestPhysicalMemory(host.memory, this.ept, { pagingStructureAccesses: false });
    this.walkMemory = new GuestCpuMemory(new GuestPhysicalMemory(host.memory, this.ept), host.memory, this.ept, ramBytes, (gpa, write) => this.resolveFromCpu(gpa, write));
    this.openBus = new OpenBusMappings(
      this.ept,
      { frame: () => host.openBus(), largeRegion: () => host.openBusLarge() },
      (gpa, size) => gpa >= ramBytes && this.ept.ranges(gpa, size).length === 0,
    );
    this.inspectMemory = new GuestPhysicalMemory(host.memory, this.ept, { setAccessedDirty: false });
    const data = this.loader;
    const ept = this.ept;
    this.secondLevel = {
      // The CPU's walks read guest tables through walkMemory (paging-structure accesses, EPT A/D) and
      // translate() through `loader`: both this EPT, which the native TLB fill may walk the same way.
      eptp: () => ept.eptp(),
      translate: (gpa, access) => {
        try {
          const r = data.translate(gpa, access);
          return { hpa: r.hpa, writable: r.perms.w, executable: r.perms.x, dirty: r.dirty };
        } catch {
          return null;
        }
      },
      inspect: (gpa, access) => {
        const r = eptWalk(host.memory, ept.eptp(), gpa, access, { setAccessedDirty: false });
        const steps = r.steps.map((s) => ({ level: s.level, index: s.index, entryAddr: s.entryAddr, entry: s.entry, flags: formatEptFlags(s.flags) }));
        return r.ok ? { steps, hpa: r.hpa } : { steps, hpa: null, fault: `${r.kind} at ${r.level}: ${r.reason}` };
      },
    };
    if (options.adopt) {
      this.adoptResident(options.adopt);
      return;
    }
    try {
      if (options.base) this.mapClone(options.base, options.privateRanges ?? []);
      else if ((options.populate ?? 'eager') === 'eager') this.prepopulate(this.ranges);
    } catch (e) {
      this.destroy();
      throw e;
    }
  }

  // ------------------------------------------------------------ resident state (live update)

  static readonly RESIDENT_VERSION = 1;

  /**
   * Where this VM's memory lives in host RAM, without the memory itself: the
   * EPT tables, the frames it holds, its counters. A new process over the same
   * RAM adopts it (options.adopt) and translates every GPA to the same HPA.
   */
  residentState(): StateRecord {
    const who = `${this.owner} memory`;
    if (this.shared.size > 0) throw new StateError(who, 'shared', `${this.shared.size} pages are shared copy-on-write with a linked-clone image, which live update does not carry over yet`);
    if (this.source) throw new StateError(who, 'source', 'the VM was restored lazily and still fills pages from its snapshot; populate it first (or restore with --populate eager)');
    const held: number[] = [];
    for (const [gpa, f] of [...this.held.entries()].sort((a, b) => a[0] - b[0])) held.push(gpa, f.hpa, f.size);
    return {
      version: GuestMemory.RESIDENT_VERSION,
      owner: this.owner,
      ramBytes: this.ramBytes,
      ept: this.ept.saveState(),
      held,
      logging: this.logging,
      dirtyLogEpoch: this.dirtyLogEpoch,
      eptViolations: this.eptViolations,
      lazyFaults: this.lazyFaults,
      cowCopies: this.cowCopies,
      openBus: this.openBus.residentState(),
    };
  }

  /** Checks the whole record against the allocator before taking anything (the tables were already checked by EptTables.restore). */
  private adoptResident(rec: StateRecord): void {
    const who = `${this.owner} memory`;
    checkVersion(rec, GuestMemory.RESIDENT_VERSION, who);
    if (rec['owner'] !== this.owner) throw new StateError(who, 'owner', `record is for '${String(rec['owner'])}'`);
    if (stateNumber(rec, 'ramBytes', who) !== this.ramBytes) throw new StateError(who, 'ramBytes', `record has ${rec['ramBytes']} bytes, this VM ${this.ramBytes}`);
    const held = stateNumbers(rec, 'held', who);
    if (held.length % 3 !== 0) throw new StateError(who, 'held', 'expected (gpa, hpa, size) triples');
    const frames: [number, { hpa: number; size: number }][] = [];
    for (let i = 0; i < held.length; i += 3) {
      const [gpa, hpa, size] = [held[i]!, held[i + 1]!, held[i + 2]!];
      const at = `held[${i / 3}]`;
      if (size !== FRAME_SIZE && size !== LARGE_PAGE_SIZE) throw new StateError(who, at, `size ${size} is neither 4 KiB nor 2 MiB`);
      if (!Number.isSafeInteger(gpa) || gpa < 0 || gpa % size !== 0 || gpa + size > this.ramBytes) throw new StateError(who, at, `GPA 0x${gpa.toString(16)} is not an aligned page of guest RAM`);
      // A 2 MiB leaf is one allocation: its first and last frames tell its owner (the host checked every referenced frame).
      for (const off of size === FRAME_SIZE ? [0] : [0, size - FRAME_SIZE]) {
        const o = this.host.allocator.ownerOf(hpa + off);
        if (o !== `${this.owner}:ram`) throw new StateError(who, at, `frame 0x${(hpa + off).toString(16)} is ${o === null ? 'free' : `owned by '${o}'`} in the allocator, expected '${this.owner}:ram'`);
        if (this.host.references(hpa + off) < 1) throw new StateError(who, at, `frame 0x${(hpa + off).toString(16)} has no reference in the host memory manager`);
      }
      frames.push([gpa, { hpa, size }]);
    }
    const logging = stateBoolean(rec, 'logging', who);
    const counters = ['dirtyLogEpoch', 'eptViolations', 'lazyFaults', 'cowCopies'].map((f) => {
      const n = stateNumber(rec, f, who);
      if (!Number.isSafeInteger(n) || n < 0) throw new StateError(who, f, `${n} is not a count`);
      return n;
    });
    this.openBus.adoptResident(stateRecord(rec, 'openBus', who), who);
    for (const [gpa, f] of frames) this.held.set(gpa, f);
    this.logging = logging;
    [this.dirtyLogEpoch, this.eptViolations, this.lazyFaults, this.cowCopies] = counters as [number, number, number, number];
  }

  // ------------------------------------------------------------ population

  isRam(gpa: number): boolean {
    return gpa >= 0 && gpa < this.ramBytes;
  }

  /** Maps every unmapped RAM page in `ranges` now (2 MiB leaves where a whole aligned run is unmapped). Returns bytes mapped. */
  prepopulate(ranges: readonly GpaRange[]): number {
    let mapped = 0;
    for (const r of ranges) {
      const start = Math.max(0, r.gpa - (r.gpa % FRAME_SIZE));
      const end = Math.min(this.ramBytes, r.gpa + r.length);
      for (let page = start; page < end; ) {
        if (!this.logging && page % LARGE_PAGE_SIZE === 0 && page + LARGE_PAGE_SIZE <= end && this.unmappedRun(page, LARGE_PAGE_SIZE)) {
          this.populateLarge(page);
          page += LARGE_PAGE_SIZE;
          mapped += LARGE_PAGE_SIZE;
          continue;
        }
        if (!this.ept.lookup(page)) {
          this.populatePage(page);
          mapped += FRAME_SIZE;
        }
        page += FRAME_SIZE;
      }
    }
    return mapped;
  }

  private unmappedRun(gpa: number, length: number): boolean {
    return this.ept.mappings(gpa, length).next().done === true;
  }

  private populateLarge(gpa: number): void {
    const [hpa] = this.host.allocator.allocateLargePages(1, { owner: `${this.owner}:ram` });
    for (let off = 0; off < LARGE_PAGE_SIZE; off += FRAME_SIZE) this.host.retain(hpa! + off);
    this.held.set(gpa, { hpa: hpa!, size: LARGE_PAGE_SIZE });
    if (this.source) for (let off = 0; off < LARGE_PAGE_SIZE; off += FRAME_SIZE) this.fill(hpa! + off, gpa + off);
    this.ept.map(gpa, hpa!, LARGE_PAGE_SIZE, { ...RWX, largePages: true });
  }

  private populatePage(gpa: number): void {
    const [hpa] = this.host.allocator.allocate(1, { owner: `${this.owner}:ram` });
    this.host.retain(hpa!);
    this.held.set(gpa, { hpa: hpa!, size: FRAME_SIZE });
    if (this.source) this.fill(hpa!, gpa);
    this.ept.map(gpa, hpa!, FRAME_SIZE, RWX);
  }

  private fill(hpa: number, gpa: number): void {
    const bytes = this.source!(gpa);
    if (bytes && bytes !== ZERO_PAGE) this.host.memory.write(hpa, bytes.subarray(0, FRAME_SIZE));
  }

  /** Stop filling from the content source: pages not populated yet become zero pages. */
  detachSource(): void {
    this.source = null;
  }

  private mapClone(base: SharedImage, privateRanges: readonly GpaRange[]): void {
    if (base.ramBytes !== this.ramBytes) throw new RangeError(`${this.owner}: base image '${base.name}' has ${base.ramBytes} bytes of RAM, this VM ${this.ramBytes}`);
    const isPrivate = (page: number): boolean => privateRanges.some((r) => page >= r.gpa - (r.gpa % FRAME_SIZE) && page < r.gpa + r.length);
    for (let gpa = 0; gpa < this.ramBytes; ) {
      const hpa = base.frames.get(gpa)!;
      // A whole 2 MiB run of the image that stays shared gets one read-only 2 MiB leaf.
      const largeShared =
        gpa % LARGE_PAGE_SIZE === 0 && hpa % LARGE_PAGE_SIZE === 0 && gpa + LARGE_PAGE_SIZE <= this.ramBytes && base.frames.get(gpa + LARGE_PAGE_SIZE - FRAME_SIZE) === hpa + LARGE_PAGE_SIZE - FRAME_SIZE && ![...Array(LARGE_PAGE_SIZE / FRAME_SIZE).keys()].some((i) => isPrivate(gpa + i * FRAME_SIZE));
      const size = largeShared ? LARGE_PAGE_SIZE : FRAME_SIZE;
      if (!largeShared && isPrivate(gpa)) {
        const [own] = this.host.allocator.allocate(1, { owner: `${this.owner}:ram` });
        this.host.retain(own!);
        this.held.set(gpa, { hpa: own!, size: FRAME_SIZE });
        this.host.memory.write(own!, this.host.memory.read(hpa, FRAME_SIZE));
        this.ept.map(gpa, own!, FRAME_SIZE, RWX);
      } else {
        for (let off = 0; off < size; off += FRAME_SIZE) {
          this.host.retain(hpa + off);
          this.shared.set(gpa + off, hpa + off);
        }
        this.ept.map(gpa, hpa, size, { ...RX, largePages: largeShared });
      }
      gpa += size;
    }
  }

  // ------------------------------------------------------------ violations

  /**
   * An EPT violation on guest RAM: populate a lazy page or copy a shared one.
   * The caller flushes the faulting engine's TLB and retries the access.
   */
  handleViolation(gpa: number): ViolationResult {
    this.eptViolations++;
    const page = gpa - (gpa % FRAME_SIZE);
    if (!this.isRam(page)) return 'not-ram';
    return this.resolve(page);
  }

  private resolve(page: number): ViolationResult {
    if (!this.ept.lookup(page)) {
      this.populatePage(page);
      this.lazyFaults++;
      return 'populated';
    }
    const sharedHpa = this.shared.get(page);
    if (sharedHpa === undefined) return 'fault';
    this.copyOnWrite(page, sharedHpa);
    return 'copied';
  }

  private copyOnWrite(page: number, sharedHpa: number): void {
    const [own] = this.host.allocator.allocate(1, { owner: `${this.owner}:ram` });
    this.host.retain(own!);
    this.host.memory.writeBytes(own!, this.host.memory.read(sharedHpa, FRAME_SIZE));
    // protect() splits a shared 2 MiB leaf around this page; then the page moves to its own frame.
    this.ept.unmap(page, FRAME_SIZE);
    this.ept.map(page, own!, FRAME_SIZE, RWX);
    this.shared.delete(page);
    this.host.release(sharedHpa);
    this.held.set(page, { hpa: own!, size: FRAME_SIZE });
    this.cowCopies++;
    // Other engines may hold read-only translations of the old frame for this page.
    this.shootdown();
  }

  /**
   * A page-walk or event-delivery access by the CPU layer hit an EPT
   * violation. Between runs it is resolved here (and the engines' TLBs shot
   * down); inside a run it must become a VM exit instead, so return false.
   */
  private resolveFromCpu(gpa: number, _write: boolean): boolean {
    if (this.engineRunning()) return false;
    const page = gpa - (gpa % FRAME_SIZE);
    if (!this.isRam(page)) return false;
    this.eptViolations++;
    let r: ViolationResult;
    try {
      r = this.resolve(page);
    } catch (e) {
      // No host frame: leave it to the violation exit, which stops this VM with a report.
      if (e instanceof FrameAllocatorError) return false;
      throw e;
    }
    if (r === 'populated') this.shootdown();
    return r === 'populated' || r === 'copied';
  }

  // ------------------------------------------------------------ dirty log

  get dirtyLogging(): boolean {
    return this.logging;
  }

  /**
   * Starts exact dirty logging for `reader` (default: the one shared by callers that pass none):
   * 2 MiB leaves are split, dirty bits cleared, every engine's TLB shot down. When the log is
   * already on for other readers nothing is cleared; this reader's first harvest may then name a
   * few pages written just before it started (a superset, never a loss).
   */
  startDirtyLog(reader: object = DEFAULT_DIRTY_READER): void {
    if (reader === DEFAULT_DIRTY_READER) this.dirtyLogEpoch++;
    this.dirtyReaders.set(reader, new Set());
    if (this.logging) {
      // A sampling reader left engines writable over clean pages: the new reader needs them re-armed.
      if (this.dirtyUnarmed) this.rearmDirty();
      return;
    }
    for (const m of [...this.ept.mappings(0, this.ramBytes)]) if (m.size > FRAME_SIZE) this.ept.protect(m.gpa, FRAME_SIZE, m.perms);
    this.logging = true;
    this.ept.clearDirty(0, this.ramBytes);
    this.rearmDirty();
  }

  /** Whether `reader` has the dirty log on. */
  isDirtyReader(reader: object = DEFAULT_DIRTY_READER): boolean {
    return this.dirtyReaders.has(reader);
  }

  /** GPA pages written since `reader`'s last harvest (or since it started logging); re-arms the log. */
  harvestDirty(reader: object = DEFAULT_DIRTY_READER): number[] {
    if (!this.logging || !this.dirtyReaders.has(reader)) throw new Error(`${this.owner}: dirty logging is not on${this.logging ? ' for this reader' : ''}`);
    this.dirtyScanner ??= new EptDirtyScanner(this.host.memory);
    const pages = this.dirtyScanner.collect(Number(this.ept.eptp() & ~0xfffn), this.ramBytes);
    // Engines that cached a writable translation must take a write fill (and set D) again.
    // (With no D bit set, no engine holds write permission: it is granted only by a fill that sets D.)
    if (pages.length > 0 || this.dirtyUnarmed) this.rearmDirty();
    return this.tookDirty(pages, reader);
  }

  /**
   * A cheap, inexact harvest for a reader that only needs a rate (the behaviour observer): the
   * pages whose D bit is set, cleared, but with no shootdown. A page an engine keeps writable in
   * its TLB is then not seen again until the TLB drops it (a miss, a flush, the next exact
   * harvest), so the result is a lower bound; pages first written after it are all seen. With
   * another reader on the log this is an exact harvest: they must lose nothing.
   */
  sampleDirty(reader: object = DEFAULT_DIRTY_READER): number[] {
    if (this.dirtyReaders.size !== 1) return this.harvestDirty(reader);
    if (!this.logging || !this.dirtyReaders.has(reader)) throw new Error(`${this.owner}: dirty logging is not on${this.logging ? ' for this reader' : ''}`);
    this.dirtyScanner ??= new EptDirtyScanner(this.host.memory);
    const pages = this.dirtyScanner.collect(Number(this.ept.eptp() & ~0xfffn), this.ramBytes);
    if (pages.length > 0) this.dirtyUnarmed = true;
    return this.tookDirty(pages, reader);
  }

  private rearmDirty(): void {
    this.dirtyUnarmed = false;
    this.ept.invalidate();
    this.shootdown();
  }

  /**
   * Pages a harvest by `reader` cleared from the EPT: the other readers keep them for their next
   * harvest. Returns `pages` plus what others' harvests kept for `reader`, in GPA order.
   */
  private tookDirty(pages: readonly number[], reader: object): number[] {
    if (reader === DEFAULT_DIRTY_READER) this.dirtyLogEpoch++;
    for (const [r, pending] of this.dirtyReaders) if (r !== reader) for (const p of pages) pending.add(p);
    const own = this.dirtyReaders.get(reader);
    if (!own || own.size === 0) return [...pages].sort((a, b) => a - b);
    const all = new Set(own);
    for (const p of pages) all.add(p);
    own.clear();
    return [...all].sort((a, b) => a - b);
  }

  /** Ends `reader`'s dirty log; logging stops when no reader is left. */
  stopDirtyLog(reader: object = DEFAULT_DIRTY_READER): void {
    this.dirtyReaders.delete(reader);
    if (this.dirtyReaders.size === 0) this.logging = false;
  }

  // ------------------------------------------------------------ access

  /** Loader writes (DMA semantics: translated code over those pages is dropped). Populates and copies as needed. */
  write(gpa: number, data: Uint8Array): void {
    for (let page = gpa - (gpa % FRAME_SIZE); page < gpa + data.length; page += FRAME_SIZE) {
      if (!this.isRam(page)) continue;
      if (!this.ept.lookup(page)) this.resolve(page);
      const s = this.shared.get(page);
      if (s !== undefined) this.copyOnWrite(page, s);
    }
    this.loader.write(gpa, data);
  }

  read(gpa: number, length: number): Uint8Array {
    return this.inspectMemory.read(gpa, length);
  }

  /** Guest RAM as ranges of populated pages (unpopulated pages read as zero and are left out). */
  *populatedRanges(): Generator<MemoryRange> {
    for (const m of this.ept.mappings(0, this.ramBytes)) yield { gpa: m.gpa, bytes: this.host.memory.read(m.hpa, m.size) };
  }

  /**
   * The VM's memory as a guest sees it: populated pages, plus pages a lazy VM
   * has not touched yet but its content source still holds (a snapshot of a
   * lazily restored VM must not turn those into zeros).
   */
  *contentRanges(): Generator<MemoryRange> {
    yield* this.populatedRanges();
    if (!this.source) return;
    for (let page = 0; page < this.ramBytes; page += FRAME_SIZE) {
      if (this.ept.lookup(page)) continue;
      const bytes = this.source(page);
      if (bytes && bytes.some((b) => b !== 0)) yield { gpa: page, bytes: bytes.slice(0, FRAME_SIZE) };
    }
  }

  /** The bytes of one RAM page (zeros if it was never populated). */
  readPage(page: number): Uint8Array {
    const m = this.ept.lookup(page);
    if (!m) return ZERO_PAGE;
    return this.host.memory.read(m.hpa + (page - m.gpa), FRAME_SIZE);
  }

  mapMmioWindow(gpa: number, hpa: number): void {
    this.ept.map(gpa, hpa, FRAME_SIZE, { r: true, w: true, x: false, memType: 0 });
  }

  /** Bounded per VM (hypervisor/open-bus.ts); throws OpenBusExhausted when the host has no frame left for it. */
  mapOpenBus(gpaPage: number): void {
    this.openBus.map(gpaPage);
  }

  readonly openBus: OpenBusMappings;

  stats(): GuestMemoryStats {
    let mapped = 0;
    for (const m of this.ept.mappings(0, this.ramBytes)) mapped += m.size;
    const sharedBytes = this.shared.size * FRAME_SIZE;
    return {
      ramBytes: this.ramBytes,
      sharedBytes,
      privateBytes: mapped - sharedBytes,
      unpopulatedBytes: this.ramBytes - mapped,
      eptViolations: this.eptViolations,
      lazyFaults: this.lazyFaults,
      cowCopies: this.cowCopies,
      eptTableFrames: this.ept.tableFrames().length,
    };
  }

  /** Unmaps everything and gives back every frame reference and table. */
  destroy(): void {
    for (const f of this.held.values()) for (let off = 0; off < f.size; off += FRAME_SIZE) this.host.release(f.hpa + off);
    this.held.clear();
    for (const hpa of this.shared.values()) this.host.release(hpa);
    this.shared.clear();
    this.ept.destroy();
  }
}
