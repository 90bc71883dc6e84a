import { describe, expect, it } from 'vitest';
import { createGuestMachine } from '../../vmm/run-guests.js';
import { buildImages } from '../../tools/build-images.mjs';
import { OpenBusExhausted, OpenBusMappings } from '../../hypervisor/open-bus.js';
import type { EptTables } from '../../hypervisor/ept/ept-tables.js';

const MiB = 1024 * 1024;

describe('open-bus mappings are bounded per VM', () => {
  /**
   * guests/hostile regions=16384 reads one byte from each of 16384 empty 2 MiB
   * guest-physical regions (4-36 GiB). Each used to cost an EPT page table:
   * 64 MiB of host frames, and the process died of a FrameAllocatorError.
   */
  it('a guest touching 16384 empty 2 MiB regions runs to its end on a few EPT tables; the VM next to it is unaffected', async () => {
    const images = (await buildImages({ quiet: true })).guests;
    const { machine, hypervisor, vms } = createGuestMachine(
      [
        { path: images['hostile']!, memBytes: 16 * MiB, vcpus: 1, cmdline: 'regions=16384' },
        { path: images['compute']!, memBytes: 16 * MiB, vcpus: 1, cmdline: 'rounds=16' },
      ],
      { pcpus: 1, pace: 'virtual' },
    );
    try {
      await machine.run({ timeoutMs: 300_000 });
      const [hostile, compute] = vms as [(typeof vms)[0], (typeof vms)[0]];
      expect(hostile.serial).toContain('hostile: read 16384 unbacked 2 MiB regions above 4 GiB: 16384 read alike');
      expect(hostile.exit).toMatchObject({ reason: 'debug-exit', code: 1 });
      expect(compute.exit).toMatchObject({ reason: 'debug-exit', code: 1 });
      expect(compute.serial).toContain('compute: result 0xda89a064');
      expect(hypervisor.guestReports()[0]!.exits['ept-violation']).toBeGreaterThanOrEqual(16384);
      // Whole empty 2 MiB regions are single EPT leaves: no page tables for them, and old ones are recycled.
      expect(hostile.vmMemory.ept.tableFrames().length).toBeLessThan(16);
      const openBus = (hostile.vmMemory as unknown as { openBus: OpenBusMappings }).openBus;
      expect(openBus.count).toBeLessThanOrEqual(256);
      expect(openBus.evictions).toBeGreaterThan(16384 - 256 - 1);
    } finally {
      hypervisor.close();
      machine.close();
    }
  });

  it('falls back to 4 KiB mappings next to the VM, evicts the oldest, and reports exhaustion as OpenBusExhausted', () => {
    const mapped = new Map<number, number>();
    let fail = false;
    const ept = {
      lookup: (gpa: number) => ([...mapped].some(([g, size]) => gpa >= g && gpa < g + size) ? {} : null),
      map: (gpa: number, _hpa: number, size: number) => {
        if (fail) throw new Error('cannot allocate 1 frame');
        mapped.set(gpa, size);
      },
      unmap: (gpa: number) => mapped.delete(gpa),
    } as unknown as EptTables;
    const ob = new OpenBusMappings(ept, { frame: () => 0x1000, largeRegion: () => 0x20_0000 }, (gpa) => gpa >= 0x4000_0000, 2);
    ob.map(0x3fff_f000); // next to RAM: a 4 KiB page
    ob.map(0x4000_1000); // empty region: 2 MiB
    expect([...mapped]).toEqual([[0x3fff_f000, 4096], [0x4000_0000, 2 * MiB]]);
    ob.map(0x4010_0000); // same region: already mapped
    ob.map(0x5000_0000); // third: the oldest goes
    expect([...mapped.keys()]).toEqual([0x4000_0000, 0x5000_0000]);
    expect(ob.evictions).toBe(1);
    fail = true;
    expect(() => ob.map(0x6000_0000)).toThrow(OpenBusExhausted);
  });
});
