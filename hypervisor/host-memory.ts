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
import type { VmMemory } from './vm-memory.js';
import { OpenBusMappings } from './open-bus.js';

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
}

/**
 * Guest-physical memory for the CPU layer, with an EPT translation cache (a
 * second-level TLB): page-table and data accesses translate once per page and
 * access kind, as hardware caches EPT walks. The first access walks the real
 * tables (setting EPT A/D); any change to the tables (generation bump) drops
 * the cache, so the tables stay authoritative.
 */
class GuestCpuMemory implements CpuMemory {
  private readonly cache = new Map<number, number>();

  constructor(
    private readonly gpm: GuestPhysicalMemory,
    private readonly host: PhysicalMemory,
    ept: EptTables,
    /** Guest RAM ends here: CPU writes above it that the EPT refuses hit nothing and are dropped. */
    private readonly ramBytes: number,
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
      const r = this.gpm.translate(page, kind & 1 ? 'write' : 'read', linear);
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

class EptBackedVmMemory implements VmMemory {
  readonly walkMemory: GuestCpuMemory;
  readonly secondLevel: SecondLevelTranslation;
  /** Inspection view: no A/D side effects. */
  readonly inspectMemory: GuestPhysicalMemory;

  constructor(
    private readonly host: HostMemoryManager,
    readonly ept: EptTables,
    readonly ramBytes: number,
  ) {
    const data = new GuestPhysicalMemory(host.memory, ept, { pagingStructureAccesses: false });
    this.walkMemory = new GuestCpuMemory(new GuestPhysicalMemory(host.memory, ept), host.memory, ept, ramBytes);
    this.inspectMemory = new GuestPhysicalMemory(host.memory, ept, { setAccessedDirty: false });
    this.openBus = new OpenBusMappings(
      ept,
      { frame: () => host.openBus(), largeRegion: () => host.openBusLarge() },
      (gpa, size) => gpa >= ramBytes && ept.ranges(gpa, size).length === 0,
    );
    this.loader = data;
    this.secondLevel = {
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
  }

  private readonly loader: GuestPhysicalMemory;

  /** Loader writes (DMA semantics: translated code over those pages is dropped). */
  write(gpa: number, data: Uint8Array): void {
    this.loader.write(gpa, data);
  }

  read(gpa: number, length: number): Uint8Array {
    return this.inspectMemory.read(gpa, length);
  }

  mapMmioWindow(gpa: number, hpa: number): void {
    this.ept.map(gpa, hpa, FRAME_SIZE, { r: true, w: true, x: false, memType: 0 });
    this.ept.invalidate();
  }

  /** Bounded per VM (hypervisor/open-bus.ts); throws OpenBusExhausted when the host has no frame left for it. */
  mapOpenBus(gpaPage: number): void {
    this.openBus.map(gpaPage);
  }

  readonly openBus: OpenBusMappings;

  isRam(gpa: number): boolean {
    return gpa >= 0 && gpa < this.ramBytes;
  }
}

/** Guest RAM from host frames (2 MiB pages where possible), mapped 1:1 in guest-physical from 0. */
export function createVmMemory(host: HostMemoryManager, owner: string, ramBytes: number): VmMemory & { ept: EptTables } {
  if (ramBytes % FRAME_SIZE !== 0 || ramBytes < 2 * 1024 * 1024) throw new Error(`${owner}: guest RAM ${ramBytes} must be a multiple of 4 KiB and at least 2 MiB`);
  const ept = new EptTables(host.memory, host.allocator, { owner: `${owner}:ept` });
  const large = Math.floor(ramBytes / LARGE_PAGE_SIZE);
  const pages = large > 0 ? host.allocator.allocateLargePages(large, { owner: `${owner}:ram` }) : [];
  pages.forEach((hpa, i) => ept.map(i * LARGE_PAGE_SIZE, hpa, LARGE_PAGE_SIZE, { r: true, w: true, x: true, largePages: true }));
  const rest = (ramBytes - large * LARGE_PAGE_SIZE) / FRAME_SIZE;
  if (rest > 0) {
    host.allocator.allocate(rest, { owner: `${owner}:ram` }).forEach((hpa, i) => ept.map(large * LARGE_PAGE_SIZE + i * FRAME_SIZE, hpa, FRAME_SIZE, { r: true, w: true, x: true }));
  }
  return new EptBackedVmMemory(host, ept, ramBytes);
}
