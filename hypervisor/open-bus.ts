/**
 * Open-bus mappings of one VM, bounded.
 *
 * A guest-physical address with nothing behind it reads as all-ones: on the
 * first read the EPT maps it to a shared read-only host frame of 0xFF bytes.
 * Each newly touched 2 MiB region used to cost an EPT page table (a host
 * frame) for a 4 KiB mapping, so a guest touching thousands of empty regions
 * exhausted the host frame allocator and killed the process. Now:
 * - a 2 MiB region with nothing of the VM in it is mapped whole by one 2 MiB
 *   EPT leaf onto a shared 2 MiB open-bus region (no page table at all);
 * - at most `maxRegions` open-bus mappings live at once; the oldest is
 *   unmapped (its empty EPT tables are freed) when a new one would exceed
 *   that. An evicted region faults and is mapped again on its next read,
 *   invisible to the guest, so EPT growth is bounded whatever the guest does;
 * - if the host still runs out of frames, `map` throws OpenBusExhausted for
 *   the hypervisor to stop that VM with a report.
 */
import type { EptTables } from './ept/ept-tables.js';
import { EPT_2M } from './ept/ept-tables.js';
import { stateNumber, stateNumbers, StateError, type StateRecord } from '../machine/state.js';

export class OpenBusExhausted extends Error {
  override name = 'OpenBusExhausted';
}

/** The shared all-ones host memory: a 4 KiB frame, and a 2 MiB region when the host has one to spare. */
export interface OpenBusSource {
  frame(): number;
  largeRegion(): number | null;
}

/** Open-bus mappings a VM may hold at once (each costs at most one EPT page table). */
export const DEFAULT_MAX_OPEN_BUS_REGIONS = 256;

export class OpenBusMappings {
  /** GPA and size of live open-bus mappings, oldest first. */
  private readonly live: { gpa: number; size: number }[] = [];
  evictions = 0;

  constructor(
    private readonly ept: EptTables,
    private readonly source: OpenBusSource,
    /** Whether [gpa, gpa+size) holds nothing of the VM (no RAM, no device window). */
    private readonly empty: (gpa: number, size: number) => boolean,
    private readonly maxRegions = DEFAULT_MAX_OPEN_BUS_REGIONS,
  ) {}

  get count(): number {
    return this.live.length;
  }

  /** The live mappings (already in the EPT tables) and the eviction count, for live update. */
  residentState(): StateRecord {
    return { live: this.live.flatMap((m) => [m.gpa, m.size]), evictions: this.evictions };
  }

  adoptResident(rec: StateRecord, who: string): void {
    const live = stateNumbers(rec, 'live', `${who}.openBus`);
    const evictions = stateNumber(rec, 'evictions', `${who}.openBus`);
    if (live.length % 2 !== 0 || live.length / 2 > this.maxRegions) throw new StateError(`${who}.openBus`, 'live', `expected at most ${this.maxRegions} (gpa, size) pairs`);
    for (let i = 0; i < live.length; i += 2) {
      if (!this.ept.lookup(live[i]!)) throw new StateError(`${who}.openBus`, `live[${i / 2}]`, `GPA 0x${live[i]!.toString(16)} is not mapped in the adopted EPT tables`);
    }
    this.live.length = 0;
    for (let i = 0; i < live.length; i += 2) this.live.push({ gpa: live[i]!, size: live[i + 1]! });
    this.evictions = evictions;
  }

  /** Makes the page at `gpaPage` read as all-ones. */
  map(gpaPage: number): void {
    if (this.ept.lookup(gpaPage)) return;
    const region = gpaPage - (gpaPage % EPT_2M);
    const large = this.empty(region, EPT_2M) ? this.source.largeRegion() : null;
    const mapping = large !== null ? { gpa: region, size: EPT_2M, hpa: large } : { gpa: gpaPage, size: 4096, hpa: this.source.frame() };
    while (this.live.length >= this.maxRegions) {
      const old = this.live.shift()!;
      this.ept.unmap(old.gpa, old.size);
      this.evictions++;
    }
    try {
      this.ept.map(mapping.gpa, mapping.hpa, mapping.size, { r: true, w: false, x: true, memType: 0, largePages: mapping.size === EPT_2M });
    } catch (e) {
      throw new OpenBusExhausted(`open-bus mapping of GPA 0x${mapping.gpa.toString(16)} failed (${(e as Error).message}); ${this.live.length} open-bus mappings live`);
    }
    this.live.push({ gpa: mapping.gpa, size: mapping.size });
  }
}
