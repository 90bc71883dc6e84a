import { beforeAll, describe, expect, it } from 'vitest';
import { buildImages } from '../../tools/build-images.mjs';
import { SecurityService } from '../../hypervisor/security/security-service.js';
import { endSource, migrateTo, referenceRun, startDestination, startSource, waitFor } from './helpers.js';

/**
 * A run with a monitor also runs the security service, whose behaviour
 * observer harvests the same EPT dirty log every bucket. Pages it harvests
 * during a migration must still reach the destination: before the dirty log
 * handed every harvest to every reader, the migrated dirtier ended with
 * another checksum (found through `firmament migrate`).
 */
const MiB = 1024 * 1024;
let images: Record<string, string>;

describe('migration shares the dirty log with the behaviour observer', () => {
  beforeAll(async () => {
    images = (await buildImages({ quiet: true })).guests;
  });

  it('a dirtier observed every 1 ms of guest time migrates with its transcript intact', async () => {
    const spec = { path: images['dirtier']!, memBytes: 64 * MiB, vcpus: 1, cmdline: 'mib=8 passes=120' };
    const golden = (await referenceRun(spec)).serial;
    const dst = await startDestination({ populate: 'prepopulate' });
    const src = startSource(spec, { pauseAtBytes: 60 });
    // Buckets of 1 ms: the observer harvests between almost every two rounds of the migration.
    const security = new SecurityService(src.g.hypervisor, { bucketMs: 1 });
    try {
      await waitFor(() => src.g.machine.paused || src.g.machine.exit !== null, 'the source to start');
      expect(src.vm.state).toBe('running');
      let observerDirtyPages = 0;
      security.observe(src.vm).addSink({ bucket: (_vm, b) => (observerDirtyPages += b.counts.dirtyPages ?? 0), firstTouch: () => undefined });
      const migrating = migrateTo(src, dst.port);
      src.g.machine.resume();
      const report = await migrating;
      const done = await dst.result;
      expect(report.rounds.length).toBeGreaterThan(1);
      // The observer did harvest meanwhile (it saw dirty pages), yet nothing was lost.
      expect(observerDirtyPages).toBeGreaterThan(0);
      expect(src.printed.join('') + done.printed.join('')).toBe(golden);
    } finally {
      dst.result.catch(() => undefined);
      await endSource(src);
      dst.close();
    }
  }, 300_000);
});
