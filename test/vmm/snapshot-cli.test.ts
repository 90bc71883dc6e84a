/** VM snapshots as a user takes them: from the monitor of a running `run`, into the store, and back. */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { buildImages } from '../../tools/build-images.mjs';
import { createGuestMachine } from '../../vmm/run-guests.js';
import { vmSnapshotCommands } from '../../tools/cli/vm-snapshots.js';

const CLI = path.resolve(import.meta.dirname, '../../tools/firmament.mjs');
const cli = (...args: string[]) => spawnSync('node', [CLI, ...args], { encoding: 'utf8', timeout: 120_000 });
const dir = mkdtempSync(path.join(tmpdir(), 'fm-snapcli-'));
const MiB = 1024 * 1024;

interface RunDoc {
  serial: string;
  exit: { reason: string; code: number; atNs: number };
}

describe('VM snapshots from the CLI and the monitor', () => {
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('snapshot save on a running guest, then run --restore: the joined console, exit and virtual time equal an uninterrupted run', async () => {
    const guest = (await buildImages({ quiet: true })).guests['timer']!;
    const store = path.join(dir, 'store');
    // The reference runs on virtual time (no sleeping); the snapshotted run idles in real time so there is time to catch it.
    const args = [guest, '--cmdline', 'idle=20000'];
    const ref = JSON.parse(cli('run', ...args, '--json', '--clock', 'virtual').stdout) as RunDoc;
    expect(ref.exit.reason).toBe('debug-exit');

    const sock = path.join(dir, 'mon.sock');
    const child = spawn('node', [CLI, 'run', ...args, '--json', '--monitor', sock, '--store', store], { stdio: 'ignore' });
    const done = new Promise<number | null>((resolve) => child.on('exit', resolve));
    try {
      for (let i = 0; i < 2400 && !existsSync(sock); i++) await new Promise((r) => setTimeout(r, 25));
      // Not spawnSync: the test process must stay responsive while the two CLIs talk.
      const saved = await new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve) => {
        const c = spawn('node', [CLI, 'snapshot', 'save', 'mid', '--monitor', sock, '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
        let stdout = '';
        let stderr = '';
        c.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
        c.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
        c.on('exit', (status) => resolve({ status, stdout, stderr }));
      });
      expect(saved.stderr, saved.stderr).toBe('');
      expect(saved.status).toBe(0);
      const info = JSON.parse(saved.stdout) as { vm: string; ref: string; clockNs: number; memoryBytes: number };
      expect(info).toMatchObject({ vm: 'timer', ref: 'mid' });
      expect(info.clockNs).toBeGreaterThan(0);
      expect(info.clockNs).toBeLessThan(ref.exit.atNs);
    } finally {
      child.kill();
      await done;
    }

    const listed = cli('snapshot', 'list', '--store', store, '--json');
    expect(listed.stdout).toContain('"mid"');
    const restored = cli('run', '--restore', 'mid', '--store', store, '--json', '--clock', 'virtual');
    expect(restored.status).toBe(ref.exit.code);
    const doc = JSON.parse(restored.stdout) as RunDoc;
    expect(doc.serial).toBe(ref.serial);
    expect(doc.exit.atNs).toBe(ref.exit.atNs);
    // Lazy population ends with the same console.
    const lazy = JSON.parse(cli('run', '--restore', 'mid', '--store', store, '--json', '--populate', 'lazy', '--clock', 'virtual').stdout) as RunDoc;
    expect(lazy.serial).toBe(ref.serial);
  }, 240_000);

  it('bad input: an unknown snapshot, a missing monitor, an image beside --restore', () => {
    const store = path.join(dir, 'empty');
    const missing = cli('run', '--restore', 'nope', '--store', store);
    expect(missing.status).toBe(2);
    expect(missing.stderr).toMatch(/nope/);
    expect(missing.stderr).not.toMatch(/\n\s+at /);
    const noMon = cli('snapshot', 'save', 'x');
    expect(noMon.status).toBe(2);
    expect(noMon.stderr).toMatch(/--monitor/);
    expect(cli('run', 'x.elf', '--restore', 'mid').status).toBe(2);
  }, 240_000);

  it('snapshot-load puts a running VM back in place: the run then ends exactly like one that went on from the snapshot', async () => {
    const guest = (await buildImages({ quiet: true })).guests['dirtier']!;
    const spec = [{ path: guest, memBytes: 64 * MiB, vcpus: 1, cmdline: 'mib=4 passes=6' }];
    const opts = { pcpus: 1, pace: 'virtual' as const };
    const ref = createGuestMachine(spec, opts);
    await ref.machine.run({ timeoutMs: 120_000 });
    const refSerial = ref.vms[0]!.serial;
    const refAt = ref.vms[0]!.exit!.atNs;
    ref.hypervisor.close();
    ref.machine.close();

    const g = createGuestMachine(spec, opts);
    const cmds = vmSnapshotCommands(g.hypervisor, path.join(dir, 'inplace'));
    const vm = g.vms[0]!;
    let stage = 0;
    vm.onSerial = () => {
      const lines = vm.serial.split('\n').length;
      if ((stage === 0 && lines >= 3) || (stage === 1 && lines >= 5)) g.machine.pauseAfterRound();
    };
    const running = g.machine.run({ timeoutMs: 120_000 });
    try {
      while (!g.machine.paused) await new Promise((r) => setTimeout(r, 2));
      await cmds.save({ name: 'early' });
      stage = 1;
      g.machine.resume();
      while (!g.machine.paused) await new Promise((r) => setTimeout(r, 2));
      const later = vm.serial;
      stage = 2;
      const loaded = await cmds.load({ name: 'early' });
      expect(vm.serial.length).toBeLessThan(later.length);
      expect(loaded.vm).toBe(vm.name);
      await expect(cmds.load({ name: 'missing' })).rejects.toThrow(/missing/);
      g.machine.resume();
      await running;
      expect(vm.serial).toBe(refSerial);
      expect(vm.exit!.atNs).toBe(refAt);
    } finally {
      if (!g.machine.exit) g.machine.stop();
      await running;
      g.hypervisor.close();
      g.machine.close();
    }
  }, 240_000);
});
