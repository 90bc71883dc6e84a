import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { createGuestMachine } from '../../vmm/run-guests.js';
import { buildImages } from '../../tools/build-images.mjs';

/**
 * Every guest gives byte-identical COM1 output and the same exit status under
 * `firmament run` (our hypervisor) as under qemu-system-x86_64 -kernel: the
 * golden transcripts in test/guests/expected/ are QEMU's (see qemu-oracle.test.ts).
 */
interface GoldenCase {
  guest: string;
  expected: string;
  append?: string;
  smp?: number;
  cpu?: string;
  exitCode: number;
}

/** The same case list the QEMU oracle test replays (test/guests/qemu-oracle.test.ts). */
const MANIFEST = JSON.parse(readFileSync(join(import.meta.dirname, '../guests/expected/cases.json'), 'utf8')) as { cases: GoldenCase[] };
// '-cpu max' only adds MONITOR/MWAIT, which our CPU always advertises: those runs are the same here.
const CASES = MANIFEST.cases.filter((c) => c.cpu === undefined).map((c) => ({ ...c, ...(c.smp ? { vcpus: c.smp } : {}) }));

const MiB = 1024 * 1024;
let images: Record<string, string>;

describe('guests under the hypervisor match QEMU byte for byte', () => {
  beforeAll(async () => {
    images = (await buildImages({ quiet: true })).guests;
  });

  for (const c of CASES) {
    const label = `${c.guest}${c.append ? ` (${c.append})` : ''}${c.vcpus ? ` with ${c.vcpus} vCPUs` : ''}`;
    it(label, async () => {
      const { machine, hypervisor, vms } = createGuestMachine([{ path: images[c.guest]!, memBytes: 64 * MiB, vcpus: c.vcpus ?? 1, ...(c.append ? { cmdline: c.append } : {}) }], { pcpus: 1, pace: 'virtual' });
      try {
        const exit = await machine.run({ timeoutMs: 120_000 });
        const golden = readFileSync(join(import.meta.dirname, '../guests/expected', c.expected), 'latin1');
        expect(vms[0]!.serial).toBe(golden);
        expect(exit).toMatchObject({ reason: 'debug-exit', code: (c.exitCode << 1) | 1 });
        const exits = hypervisor.guestReports()[0]!.exits;
        expect(exits['io']).toBeGreaterThan(0);
      } finally {
        hypervisor.close();
        machine.close();
      }
    });
  }
});

describe('vCPU scheduling', () => {
  it('runs more vCPUs than pCPUs: 4 vCPUs started by INIT-SIPI-SIPI on 2 logical CPUs', async () => {
    const images = (await buildImages({ quiet: true })).guests;
    const { machine, hypervisor, vms } = createGuestMachine([{ path: images['smp']!, memBytes: 64 * MiB, vcpus: 4 }], { pcpus: 2, pace: 'virtual' });
    try {
      const exit = await machine.run({ timeoutMs: 120_000 });
      expect(exit).toMatchObject({ reason: 'debug-exit', code: 1 });
      expect(vms[0]!.serial).toContain('smp: 4 CPU(s) online');
      expect(vms[0]!.serial).toContain('smp: shared counter 400000 (expected 400000)');
      const placed = new Set(hypervisor.guestReports()[0]!.vcpus.map((v) => v.lastPcpu));
      expect([...placed].sort()).toEqual([0, 1]);
    } finally {
      hypervisor.close();
      machine.close();
    }
  });
});
