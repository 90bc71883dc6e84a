import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildImages } from '../../tools/build-images.mjs';
import { start, until } from './processes.js';

/**
 * `firmament boot --incoming tcp:HOST:PORT`: firmware, OS and the handoff,
 * then the hypervisor waits for a VM that `firmament migrate` moves out of a
 * `run`. The source's COM1 followed by the migrated guest's equals an
 * unmigrated run's, and the boot ends as any boot whose guest succeeded.
 */
let images: Record<string, string>;
let dir: string;

interface BootJson {
  handoff: { result: string } | null;
  exit: { reason: string; code: number };
  guests: { name: string; serial: string; exit: { reason: string; code: number } | null }[];
  stages: { name: string }[];
}

describe('firmament boot --incoming', () => {
  beforeAll(async () => {
    images = (await buildImages({ quiet: true })).guests;
    dir = mkdtempSync(path.join(tmpdir(), 'fm-boot-incoming-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('boots firmware, OS and hypervisor, then runs a VM migrated from a run', async () => {
    const guest = [images['dirtier']!, '--cmdline', 'mib=8 passes=120'];
    const ref = start(['run', ...guest]);
    const dst = start(['boot', '--incoming', 'tcp:127.0.0.1:0', '--json']);
    const procs = [ref, dst];
    try {
      // isa-debug-exit with 0: status (0 << 1) | 1, as QEMU.
      expect(await ref.done).toBe(1);
      // It listens only after the handoff: the OS and its containers ran first.
      await until(() => /waiting for a migration on tcp:127\.0\.0\.1:\d+/.test(dst.stderr()), 'the booted machine to listen');
      const port = /tcp:127\.0\.0\.1:(\d+)/.exec(dst.stderr())![1]!;
      const sock = path.join(dir, 'src.sock');
      const src = start(['run', ...guest, '--monitor', sock]);
      procs.push(src);
      await until(() => src.stdout().includes('pass 2/120') && existsSync(sock), 'the source guest and its monitor');
      const mig = start(['migrate', '--monitor', sock, '--to', `tcp:127.0.0.1:${port}`, '--json']);
      procs.push(mig);
      expect(await mig.done, mig.stderr()).toBe(0);
      const report = JSON.parse(mig.stdout()) as { rounds: unknown[]; destination: { populate: string } };
      expect(report.rounds.length).toBeGreaterThanOrEqual(2);
      expect(report.destination.populate).toBe('prepopulate');
      expect(await src.done).toBe(0);
      expect(await dst.done, dst.stderr()).toBe(0);
      const boot = JSON.parse(dst.stdout()) as BootJson;
      expect(boot.handoff?.result).toBe('pass');
      expect(boot.stages.map((s) => s.name)).toContain('hypervisor');
      expect(boot.guests).toHaveLength(1);
      expect(boot.guests[0]!.name).toBe('dirtier');
      expect(boot.guests[0]!.exit).toMatchObject({ reason: 'debug-exit', code: 1 });
      // The VM's console travels with its state: the guest's serial is the whole transcript, the
      // source printed its first part live.
      expect(boot.guests[0]!.serial).toBe(ref.stdout());
      expect(src.stdout().length).toBeGreaterThan(0);
      expect(ref.stdout().startsWith(src.stdout())).toBe(true);
      expect(src.stdout().length).toBeLessThan(ref.stdout().length);
    } finally {
      for (const p of procs) if (p.child.exitCode === null) p.child.kill();
    }
  }, 300_000);

  it('refuses bad --incoming usage before powering on', async () => {
    const withGuest = start(['boot', '--incoming', 'tcp:127.0.0.1:0', '--guest', images['hello']!]);
    expect(await withGuest.done).toBe(2);
    expect(withGuest.stderr()).toMatch(/--incoming: .*takes no --guest/);
    const badMode = start(['boot', '--incoming', 'tcp:127.0.0.1:0', '--populate', 'eager']);
    expect(await badMode.done).toBe(2);
    expect(badMode.stderr()).toMatch(/--populate eager: with --incoming, expected prepopulate or lazy/);
    const noUri = start(['boot', '--populate', 'lazy']);
    expect(await noUri.done).toBe(2);
    expect(noUri.stderr()).toMatch(/--populate needs --incoming/);
  }, 60_000);
});
