import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildImages } from '../../tools/build-images.mjs';
import { start, until } from './processes.js';

/**
 * Three processes, as a user runs them: `run --incoming` waits, `run <guest>
 * --monitor` runs the guest, `firmament migrate` moves it while it runs. The
 * source's stdout followed by the destination's equals an unmigrated run's.
 */
let images: Record<string, string>;
let dir: string;

describe('firmament run --incoming + firmament migrate (separate processes)', () => {
  beforeAll(async () => {
    images = (await buildImages({ quiet: true })).guests;
    dir = mkdtempSync(path.join(tmpdir(), 'fm-migrate-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('moves a running dirtier guest; the joined COM1 equals an unmigrated run', async () => {
    const guest = [images['dirtier']!, '--cmdline', 'mib=8 passes=250'];
    const ref = start(['run', ...guest]);
    const refCode = await ref.done;
    const dst = start(['run', '--incoming', 'tcp:127.0.0.1:0']);
    const procs = [dst];
    try {
      await until(() => /waiting for a migration on tcp:127\.0\.0\.1:\d+/.test(dst.stderr()), 'the destination to listen');
      const port = /tcp:127\.0\.0\.1:(\d+)/.exec(dst.stderr())![1]!;
      const sock = path.join(dir, 'src.sock');
      const src = start(['run', ...guest, '--monitor', sock]);
      procs.push(src);
      await until(() => src.stdout().includes('pass 2/250') && existsSync(sock), 'the source guest and its monitor');
      const mig = start(['migrate', '--monitor', sock, '--to', `tcp:127.0.0.1:${port}`, '--json']);
      procs.push(mig);
      const migCode = await mig.done;
      expect(migCode, mig.stderr()).toBe(0);
      const report = JSON.parse(mig.stdout()) as { rounds: unknown[]; pagesSent: number; ramPages: number; downtimeMsSource: number; destination: { populate: string } };
      expect(report.rounds.length).toBeGreaterThanOrEqual(2);
      expect(report.destination.populate).toBe('prepopulate');
      expect(await src.done).toBe(0);
      expect(src.stderr()).toMatch(/VM 'dirtier' migrated to tcp:127\.0\.0\.1:\d+/);
      expect(await dst.done).toBe(refCode);
      expect(src.stdout() + dst.stdout()).toBe(ref.stdout());
      // The source printed part of it, the destination the rest.
      expect(src.stdout().length).toBeGreaterThan(0);
      expect(dst.stdout()).toMatch(/checksum 0x[0-9a-f]+\r\n$/);
    } finally {
      for (const p of procs) if (p.child.exitCode === null) p.child.kill();
    }
  }, 300_000);

  it('a migrate to nobody fails and the source guest runs on to its end', async () => {
    const sock = path.join(dir, 'src2.sock');
    const src = start(['run', images['dirtier']!, '--cmdline', 'mib=4 passes=400', '--monitor', sock]);
    try {
      await until(() => src.stdout().includes('pass 1/400') && existsSync(sock), 'the source guest and its monitor');
      const mig = start(['migrate', '--monitor', sock, '--to', 'tcp:127.0.0.1:1']);
      expect(await mig.done).toBe(1);
      expect(mig.stderr()).toMatch(/cannot connect to tcp:127\.0\.0\.1:1.*keeps running here/);
      expect(await src.done).toBe(1);
      expect(src.stdout()).toMatch(/checksum 0x[0-9a-f]+\r\n$/);
    } finally {
      if (src.child.exitCode === null) src.child.kill();
    }
  }, 300_000);
});
