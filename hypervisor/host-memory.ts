/**
 * Host-physical memory as the hypervisor sees it after the handoff: a frame
 * allocator over the handed-off map (fenced and reserved ranges never used),
 * and per-VM guest RAM + EPT tables built from its frames.
 */
import type { PhysicalMemory } from '../machine/memory/physical-memory.js';
import { HostFrameAllocator, FIRST_MIB_EXCLUSION, LARGE_PAGE_SIZE, FRAME_SIZE, type HostMemoryRange, type ExcludedRange } from './memory/frame-allocator.js';
import { EptTables } from './ept/ept-tables.js';
import { EptViolation, GuestPhysicalMemory } from './ept/guest-physical.js';
import { eptWalk, formatEptFlags } from './ept/ept-walk.js';
import type { CpuMemory, SecondLevelTranslation } from '../machine/cpu/x86-cpu.js';
import { checkVersion, stateNumber, stateNumbers, stateRecord, StateError, type StateRecord } from '../machine/state.js';

export class HostMemoryManager {
  readonly allocator: HostFrameAllocator;
  /** One host frame of 0xFF bytes, mapped read-only wherever a guest reads an empty address. */
  private openBusFrame = -1;

  constructor(
    readonly memory: PhysicalMemory,
    map: readonly HostMemoryRange[],
    exclude: readonly ExcludedRange[] = [FIRST_MIB_EXCLUSION],
  ) {
    this.allocator = new HostFrameAllocator(memory, { memoryMap: map, exclude });
  }

  /**
   * References on shared frames (a clone's base image, frames mapped by several VMs): a count per host
   * frame number, 0 when the frame is not reference-counted. A flat table, not a map: live update
   * records and rebuilds it in one linear pass (runs of equal counts), not frame by frame.
   */
  private refs = new Uint32Array(0);
  /** One past the highest frame number that ever had a reference: scans stop here. */
  private refsEnd = 0;

  private refIndex(hpa: number): number {
    const i = hpa / FRAME_SIZE;
    if (i >= this.refs.length) {
      const grown = new Uint32Array(Math.max(i + 1, this.refs.length * 2, 1024));
      grown.set(this.refs);
      this.refs = grown;
    }
    return i;
  }

  /** One more user of the frame at `hpa` (allocated by the caller). */
  retain(hpa: number): void {
    const i = this.refIndex(hpa);
    this.refs[i]!++;
    if (i >= this.refsEnd) this.refsEnd = i + 1;
  }

  /** One user fewer; the last one frees the frame. */
  release(hpa: number): void {
    const i = hpa / FRAME_SIZE;
    const n = i < this.refs.length ? this.refs[i]! : 0;
    if (n === 0) throw new Error(`release of frame 0x${hpa.toString(16)} that nobody holds`);
    this.refs[i] = n - 1;
    if (n === 1) this.allocator.free(hpa);
  }

  /** How many users hold the frame at `hpa` (0: not reference-counted). */
  references(hpa: number): number {
    const i = hpa / FRAME_SIZE;
    return i < this.refs.length ? this.refs[i]! : 0;
  }

  openBus(): number {
    if (this.openBusFrame < 0) {
      this.openBusFrame = this.allocator.allocate(1, { owner: 'hv:open-bus' })[0]!;
      this.memory.write(this.openBusFrame, new Uint8Array(FRAME_SIZE).fill(0xff));
    }
    return this.openBusFrame;
  }

  /** A shared 2 MiB region of 0xFF bytes for whole empty 2 MiB guest regions, or null if the host has none to spare. */
  openBusLarge(): number | null {
    if (this.openBusRegion === undefined) {
      try {
        this.openBusRegion = this.allocator.allocateLargePages(1, { owner: 'hv:open-bus' })[0]!;
        this.memory.write(this.openBusRegion, new Uint8Array(LARGE_PAGE_SIZE).fill(0xff));
      } catch {
        this.openBusRegion = null;
      }
    }
    return this.openBusRegion;
  }

  private openBusRegion: number | null | undefined;

  static readonly RESIDENT_VERSION = 1;

  /**
   * The allocator's table, the frame references (as runs of equal counts) and
   * the shared open-bus frames: what a new process over the same RAM needs to
   * go on allocating exactly where this one left off (live update).
   */
  residentState(): StateRecord {
    // Runs of equal non-zero counts, in frame order: [hpa, frames, count] triples.
    const refs: number[] = [];
    const counts = this.refs;
    for (let i = 0; i < this.refsEnd; ) {
      const n = counts[i]!;
      let j = i + 1;
      while (j < this.refsEnd && counts[j] === n) j++;
      if (n !== 0) refs.push(i * FRAME_SIZE, j - i, n);
      i = j;
    }
    return {
      version: HostMemoryManager.RESIDENT_VERSION,
      allocator: this.allocator.saveState(),
      refs,
      openBusFrame: this.openBusFrame,
      openBusRegion: this.openBusRegion === undefined ? -2 : this.openBusRegion === null ? -1 : this.openBusRegion,
    };
  }

  /** Takes over a residentState() record; checks it whole first. This manager must be new (built over the same map). */
  adoptResident(rec: StateRecord): void {
    const who = 'host memory';
    checkVersion(rec, HostMemoryManager.RESIDENT_VERSION, who);
    if (this.refsEnd > 0 || this.allocator.usage().usedFrames > 0) throw new StateError(who, 'allocator', 'this host memory manager has already allocated frames');
    const refs = stateNumbers(rec, 'refs', who);
    if (refs.length % 3 !== 0) throw new StateError(who, 'refs', 'expected (hpa, frames, count) triples');
    const openBusFrame = stateNumber(rec, 'openBusFrame', who);
    const openBusRegion = stateNumber(rec, 'openBusRegion', who);
    this.allocator.restoreState(stateRecord(rec, 'allocator', who));
    const runs: number[] = [];
    const allocated = this.allocator.allocations();
    let k = 0;
    for (let i = 0; i < refs.length; i += 3) {
      const [hpa, frames, n] = [refs[i]!, refs[i + 1]!, refs[i + 2]!];
      if (!Number.isSafeInteger(n) || n < 1 || n > 0xffff_ffff || !Number.isSafeInteger(frames) || frames < 1 || !Number.isSafeInteger(hpa) || hpa % FRAME_SIZE !== 0) throw new StateError(who, `refs[${i / 3}]`, 'not a run of referenced frames');
      // Runs and allocations are both sorted: one walk checks that every referenced frame is allocated.
      const end = hpa + frames * FRAME_SIZE;
      for (let cur = hpa; cur < end; ) {
        while (k < allocated.length && allocated[k]!.base + allocated[k]!.length <= cur) k++;
        const a = allocated[k];
        if (!a || a.base > cur) throw new StateError(who, `refs[${i / 3}]`, `frame 0x${cur.toString(16)} is referenced but free in the allocator`);
        cur = a.base + a.length;
      }
      runs.push(hpa / FRAME_SIZE, end / FRAME_SIZE, n);
    }
    // Checked whole: now one fill per run.
    for (let i = 0; i < runs.length; i += 3) {
      this.refIndex((runs[i + 1]! - 1) * FRAME_SIZE);
      this.refs.fill(runs[i + 2]!, runs[i]!, runs[i + 1]!);
      if (runs[i + 1]! > this.refsEnd) this.refsEnd = runs[i + 1]!;
    }
    this.openBusFrame = openBusFrame;
    this.openBusRegion = openBusRegion === -2 ? undefined : openBusRegion === -1 ? null : openBusRegion;
  }
}

/**
 * Guest-physical memory for the CPU layer, with an EPT translation cache (a
 * second-level TLB): page-table and data accesses translate once per page and
 * access kind, as hardware caches EPT walks. The first access walks the real
 * tables (setting EPT A/D); any change to the tables (generation bump) drops
 * the cache, so the tables stay authoritative.
 */
export class GuestCpuMemory implements CpuMemory {
  private readonly cache = new Map<number, number>();

  constructor(
    private readonly gpm: GuestPhysicalMemory,
    private readonly host: PhysicalMemory,
    ept: EptTables,
    /** Guest RAM ends here: CPU writes above it that the EPT refuses hit nothing and are dropped. */
    private readonly ramBytes: number,
    /** An EPT violation (lazy or copy-on-write page): true if the guest memory manager fixed it. */
    private readonly resolve: (gpa: number, write: boolean) => boolean = () => false,
  ) {
    ept.onInvalidate(() => this.cache.clear());
  }

  /**
   * A CPU store (event-delivery frames, A/D bits) into a guest-physical page
   * with nothing behind it is dropped, as on a PC bus and in QEMU (which then
   * runs the handler); before, it stopped the VM.
   */
  private dropped(gpa: number, write: () => void): void {
    try {
      write();
    } catch (e) {
      if (!(e instanceof EptViolation) || gpa < this.ramBytes) throw e;
    }
  }

  /** Host address of `gpa`; key = page | kind (0 read, 1 write, 2 paging read, 3 paging write). */
  private hpa(gpa: number, kind: 0 | 1 | 2 | 3): number {
    const page = gpa - (gpa % 4096);
    const key = page * 4 + kind;
    let base = this.cache.get(key);
    if (base === undefined) {
      const linear = kind >= 2 ? 'paging-structure' : 'none';
      const access = kind & 1 ? 'write' : 'read';
      let r;
      try {
        r = this.gpm.translate(page, access, linear);
      } catch (e) {
        if (!(e instanceof EptViolation) || !this.resolve(page, access === 'write')) throw e;
        r = this.gpm.translate(page, access, linear);
      }
      base = Number(r.pageBase) + (page % r.pageSize);
      this.cache.set(key, base);
    }
    return base + (gpa % 4096);
  }

  readU8(gpa: number): number {
    return this.host.readU8(this.hpa(gpa, 0));
  }
  readU32(gpa: number): number {
    return gpa % 4096 <= 4092 ? this.host.readU32(this.hpa(gpa, 2)) : this.gpm.readU32(gpa);
  }
  readU64(gpa: number): bigint {
    return gpa % 4096 <= 4088 ? this.host.readU64(this.hpa(gpa, 2)) : this.gpm.readU64(gpa);
  }
  writeU32(gpa: number, v: number): void {
    this.dropped(gpa, () => (gpa % 4096 <= 4092 ? this.host.writeU32(this.hpa(gpa, 3), v) : this.gpm.writeU32(gpa, v)));
  }
  writeU64(gpa: number, v: bigint): void {
    this.dropped(gpa, () => (gpa % 4096 <= 4088 ? this.host.writeU64(this.hpa(gpa, 3), v) : this.gpm.writeU64(gpa, v)));
  }

  readBytes(gpa: number, length: number): Uint8Array {
    if ((gpa % 4096) + length <= 4096) return this.host.read(this.hpa(gpa, 0), length);
    const out = new Uint8Array(length);
    this.spans(gpa, length, 0, (hpa, off, n) => out.set(this.host.read(hpa, n), off));
    return out;
  }

  writeBytes(gpa: number, data: Uint8Array): void {
    if ((gpa % 4096) + data.length <= 4096) return this.dropped(gpa, () => this.host.writeBytes(this.hpa(gpa, 1), data));
    // Page by page: the part of a frame that falls into a hole is dropped, the rest is written.
    for (let done = 0; done < data.length; ) {
      const a = gpa + done;
      const n = Math.min(data.length - done, 4096 - (a % 4096));
      const part = data.subarray(done, done + n);
      this.dropped(a, () => this.host.writeBytes(this.hpa(a, 1), part));
      done += n;
    }
  }

  private spans(gpa: number, length: number, kind: 0 | 1, f: (hpa: number, off: number, n: number) => void): void {
    for (let done = 0; done < length; ) {
      const a = gpa + done;
      const n = Math.min(length - done, 4096 - (a % 4096));
      f(this.hpa(a, kind), done, n);
      done += n;
    }
  }
}
