/**
 * Host-physical memory as the hypervisor sees it after the handoff: a frame
 * allocator over the handed-off map (fenced and reserved ranges never used),
 * and per-VM guest RAM + EPT tables built from its frames.
 */
import type { PhysicalMemory } from '../machine/memory/physical-memory.js';
import { HostFrameAllocator, FIRST_MIB_EXCLUSION, LARGE_PAGE_SIZE, FRAME_SIZE, type HostMemoryRange, type ExcludedRange } from './memory/frame-allocator.js';
import { EptTables } from './ept/ept-tables.js';
import { GuestPhysicalMemory } from './ept/guest-physical.js';
import type { SecondLevelTranslation } from '../machine/cpu/x86-cpu.js';
import type { VmMemory } from './vm-memory.js';

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
}

class EptBackedVmMemory implements VmMemory {
  readonly walkMemory: GuestPhysicalMemory;
  readonly secondLevel: SecondLevelTranslation;
  /** Inspection view: no A/D side effects. */
  readonly inspectMemory: GuestPhysicalMemory;

  constructor(
    private readonly host: HostMemoryManager,
    readonly ept: EptTables,
    readonly ramBytes: number,
  ) {
    this.walkMemory = new GuestPhysicalMemory(host.memory, ept);
    this.inspectMemory = new GuestPhysicalMemory(host.memory, ept, { setAccessedDirty: false });
    const data = new GuestPhysicalMemory(host.memory, ept, { pagingStructureAccesses: false });
    this.secondLevel = {
      translate: (gpa, access) => {
        try {
          const r = data.translate(gpa, access);
          return { hpa: r.hpa, writable: r.perms.w, executable: r.perms.x, dirty: r.dirty };
        } catch {
          return null;
        }
      },
    };
  }

  write(gpa: number, data: Uint8Array): void {
    this.walkMemory.write(gpa, data);
  }

  read(gpa: number, length: number): Uint8Array {
    return this.inspectMemory.read(gpa, length);
  }

  mapMmioWindow(gpa: number, hpa: number): void {
    this.ept.map(gpa, hpa, FRAME_SIZE, { r: true, w: true, x: false, memType: 0 });
    this.ept.invalidate();
  }

  mapOpenBus(gpaPage: number): void {
    if (this.ept.lookup(gpaPage)) return;
    this.ept.map(gpaPage, this.host.openBus(), FRAME_SIZE, { r: true, w: false, x: true, memType: 0 });
    this.ept.invalidate();
  }

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
