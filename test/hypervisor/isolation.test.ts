import { describe, expect, it } from 'vitest';
import { createGuestMachine } from '../../vmm/run-guests.js';
import { buildImages } from '../../tools/build-images.mjs';

const MiB = 1024 * 1024;

describe('VM isolation', () => {
  it('a guest scanning its whole guest-physical space sees only its own RAM and devices', async () => {
    const images = (await buildImages({ quiet: true })).guests;
    const { machine, hypervisor, vms } = createGuestMachine(
      [
        { path: images['scan']!, memBytes: 64 * MiB, vcpus: 1, cmdline: 'fill=1' },
        { path: images['scan']!, memBytes: 64 * MiB, vcpus: 1, cmdline: 'scan=1' },
      ],
      { pcpus: 2, pace: 'virtual' },
    );
    try {
      await machine.run({ timeoutMs: 120_000 });
      const [filler, scanner] = vms as [(typeof vms)[0], (typeof vms)[0]];
      expect(filler.exit).toMatchObject({ reason: 'debug-exit', code: 1 });
      expect(filler.serial).toContain('scan: filled 15840 pages with the marker');
      // Behaviour: the other VM's marker never shows up, and the rest of 4 GiB is open bus
      // except the pages a PC guest expects (its own RAM above mem_upper, where its ACPI tables are; its I/O APIC and LAPIC).
      expect(scanner.serial).toContain("scan: searched 15840 own RAM pages for another VM's marker: 0 found");
      expect(scanner.serial).toContain('scan: 4 GiB sampled every 64 KiB: 1022 RAM, 64510 open bus, 4 other');
      expect(scanner.serial).toContain('scan: non-RAM sample at 0x3fe0000 reads 0x53434146'); // "FACS"
      expect(scanner.serial).toContain('scan: non-RAM sample at 0xfec00000 reads 0');
      expect(scanner.serial).toContain('scan: non-RAM sample at 0xfee00000 reads 0');
      expect(scanner.exit).toMatchObject({ reason: 'debug-exit', code: 1 });

      // Structure: every host frame the scanner's EPT reaches is its own RAM, its device window or the shared open-bus page.
      const alloc = hypervisor.host.allocator;
      const foreign = new Set<string>();
      for (const m of scanner.vmMemory.ept.mappings()) {
        for (let off = 0; off < m.size; off += 4096) {
          const owner = alloc.ownerOf(m.hpa + off);
          if (owner !== 'vm2:ram' && owner !== 'hv:open-bus' && m.hpa < machine.memory.ramSize) foreign.add(`${owner}@0x${(m.hpa + off).toString(16)}`);
        }
      }
      expect([...foreign]).toEqual([]);
      // And none of them is an EPT table page of either VM.
      const tables = new Set([...filler.vmMemory.ept.tableFrames(), ...scanner.vmMemory.ept.tableFrames()]);
      for (const m of scanner.vmMemory.ept.mappings()) for (let off = 0; off < m.size; off += 4096) expect(tables.has(m.hpa + off)).toBe(false);
    } finally {
      hypervisor.close();
      machine.close();
    }
  });

  it('a triple fault stops that VM with a report; the other VM goes on', async () => {
    const images = (await buildImages({ quiet: true })).guests;
    const { machine, hypervisor, vms } = createGuestMachine(
      [
        { path: images['crash']!, memBytes: 16 * MiB, vcpus: 1 },
        { path: images['compute']!, memBytes: 16 * MiB, vcpus: 1, cmdline: 'rounds=16' },
      ],
      { pcpus: 1, pace: 'virtual' },
    );
    try {
      await machine.run({ timeoutMs: 120_000 });
      expect(vms[0]!.exit?.reason).toBe('triple-fault');
      expect(vms[0]!.exit?.detail).toMatch(/triple fault: #GP general protection while delivering #DF/);
      expect(vms[1]!.exit).toMatchObject({ reason: 'debug-exit', code: 1 });
      expect(vms[1]!.serial).toContain('compute: result 0xda89a064');
      expect(hypervisor.guestReports()[0]!.exits['triple-fault']).toBe(1);
    } finally {
      hypervisor.close();
      machine.close();
    }
  });
});
