import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildImages } from '../../tools/build-images.mjs';
import { endSource, migrateTo, referenceRun, startDestination, startSource, waitFor } from './helpers.js';
import { guestHooks } from '../../tools/cli/guest-hooks.js';
import type { MigrationProgress } from '../../vmm/migration/source.js';

/**
 * Every deterministic guest of the golden suite, live-migrated mid-run between
 * two machines over loopback TCP: the source's COM1 up to the switch-over plus
 * the destination's COM1 after it equals the unmigrated transcript byte for
 * byte, with the same exit status. The populate modes alternate.
 */
interface GoldenCase {
  guest: string;
  expected: string;
  append?: string;
  smp?: number;
  cpu?: string;
  exitCode: number;
}
const DIR = join(import.meta.dirname, '../guests/expected');
const MANIFEST = JSON.parse(readFileSync(join(DIR, 'cases.json'), 'utf8')) as { cases: GoldenCase[] };
const CASES = MANIFEST.cases.filter((c) => c.cpu === undefined && !(c.append ?? '').includes('mib=100'));
const MiB = 1024 * 1024;
let images: Record<string, string>;

describe('live migration keeps the transcript', () => {
  beforeAll(async () => {
    images = (await buildImages({ quiet: true })).guests;
  });

  CASES.forEach((c, i) => {
    const populate = i % 2 === 0 ? 'prepopulate' : 'lazy';
    const label = `${c.guest}${c.append ? ` (${c.append})` : ''}${c.smp ? ` with ${c.smp} vCPUs` : ''}, ${populate}`;
    it(label, async () => {
      const golden = readFileSync(join(DIR, c.expected), 'latin1');
      const dst = await startDestination({ populate });
      // Pause at the end of the round in which half the transcript is out, then migrate (hello prints
      // everything in its first round: it moves before its first instruction).
      const src = startSource({ path: images[c.guest]!, memBytes: 64 * MiB, vcpus: c.smp ?? 1, ...(c.append ? { cmdline: c.append } : {}) }, { pauseAtBytes: c.guest === 'hello' ? 0 : Math.ceil(golden.length / 2) });
      try {
        await waitFor(() => src.g.machine.paused || src.g.machine.exit !== null, 'the source to reach mid-run');
        expect(src.vm.state).toBe('running');
        // Most golden guests end within milliseconds of guest time: they migrate from the paused point
        // (pre-copy then finds nothing dirty). The live cases below keep running during pre-copy.
        const report = await migrateTo(src, dst.port);
        expect(src.g.hypervisor.vms).not.toContain(src.vm);
        const done = await dst.result;
        const joined = src.printed.join('') + done.printed.join('');
        expect(joined).toBe(golden);
        expect(done.vm.serial).toBe(golden);
        expect(done.exit.code).toBe((c.exitCode << 1) | 1);
        expect(report.digest).toBe(done.report.digest);
        expect(done.report.populate).toBe(populate);
      } finally {
        dst.result.catch(() => undefined);
        await endSource(src);
        dst.close();
      }
    }, 300_000);
  });

  /** Guests that run long enough to be migrated while they run: the reference is an unmigrated run of the same command line. */
  const LIVE = [
    { guest: 'dirtier', append: 'mib=8 passes=300', vcpus: 1, populate: 'prepopulate' as const, bandwidth: null },
    { guest: 'dirtier', append: 'mib=8 passes=300', vcpus: 2, populate: 'lazy' as const, bandwidth: 32 * MiB },
    { guest: 'compute', append: 'rounds=3000', vcpus: 1, populate: 'lazy' as const, bandwidth: null },
  ];
  for (const c of LIVE) {
    it(`live: ${c.guest} (${c.append}), ${c.vcpus} vCPU, ${c.populate}${c.bandwidth ? `, bandwidth ${c.bandwidth / MiB} MiB/s` : ''}`, async () => {
      const spec = { path: images[c.guest]!, memBytes: 64 * MiB, vcpus: c.vcpus, cmdline: c.append };
      const refExit = await referenceRun(spec);
      const golden = refExit.serial;
      const dst = await startDestination({ populate: c.populate });
      const src = startSource(spec, { pauseAtBytes: 60 });
      try {
        await waitFor(() => src.g.machine.paused || src.g.machine.exit !== null, 'the source to start');
        expect(src.vm.state).toBe('running');
        // The VMs pane (monitor `vcpus`, TUI) shows the migration while it runs.
        const paneStates: string[] = [];
        const hooks = guestHooks(src.g.machine, src.g.hypervisor);
        const onProgress = (p: MigrationProgress): void => {
          if (p.phase === 'pre-copy') paneStates.push(hooks.vms!()[0]!.state);
        };
        const migrating = migrateTo(src, dst.port, { ...(c.bandwidth ? { bandwidth: c.bandwidth } : {}), onProgress });
        src.g.machine.resume();
        const report = await migrating;
        const done = await dst.result;
        const joinedLive = src.printed.join('') + done.printed.join('');
        if (joinedLive !== golden) {
          let k = 0;
          while (joinedLive[k] === golden[k]) k++;
          console.log('DIFF at', k, 'source printed', src.printed.join('').length, JSON.stringify(joinedLive.slice(k - 80, k + 80)), JSON.stringify(golden.slice(k - 80, k + 80)), 'dst vm serial equal joined', done.vm.serial === joinedLive);
        }
        expect(joinedLive).toBe(golden);
        expect(done.exit.code).toBe(refExit.code);
        // Prepopulated, the VM ends at the reference's virtual nanosecond. Lazily, each first touch is a VM
        // exit that ends a slice early, and slice ends move where timer interrupts land: the same bytes, a
        // slightly different end time.
        if (c.populate === 'prepopulate') expect(done.exit.atNs).toBe(refExit.atNs);
        // It ran during pre-copy: more than one round, and the guest printed on the source after the migration began.
        expect(report.rounds.length).toBeGreaterThan(1);
        expect(paneStates[0]).toMatch(/^migrating: pre-copy round 1, \d+\.\d MiB sent/);
        console.log(JSON.stringify({ case: `${c.guest} ${c.append} ${c.populate}`, rounds: report.rounds.length, pagesSent: report.pagesSent, ramPages: report.ramPages, throttle: report.throttleSteps, downtimeMsSource: report.downtimeMsSource, downtimeMsDestination: report.downtimeMsDestination, afterResume: done.afterResume }));
      } finally {
        dst.result.catch(() => undefined);
        await endSource(src);
        dst.close();
      }
    }, 300_000);
  }
});
