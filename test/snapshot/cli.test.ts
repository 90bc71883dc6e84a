/** `firmament snapshot ...` as a user runs it: --store, --json, exit statuses, errors without stack traces. */
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { SnapshotStore } from '../../vmm/snapshot/index.js';
import { startRegistry } from '../support/registry.js';
import { chunkBlobPath, syntheticVm, tempStoreDir } from './helpers.js';

const CLI = path.resolve(import.meta.dirname, '../../tools/firmament.mjs');
const cli = (...args: string[]) => spawnSync('node', [CLI, 'snapshot', ...args], { encoding: 'utf8', timeout: 60_000 });
/** Async, for commands that talk to a registry this process serves. */
const cliAsync = (...args: string[]) =>
  new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve) => {
    const c = spawn('node', [CLI, 'snapshot', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    c.stdout.on('data', (d) => (stdout += d));
    c.stderr.on('data', (d) => (stderr += d));
    c.on('close', (status) => resolve({ status, stdout, stderr }));
  });
const hasDockerRegistry = spawnSync('sh', ['-c', 'command -v docker-registry']).status === 0;

let dir = '';
beforeAll(async () => {
  dir = tempStoreDir();
  const s = SnapshotStore.open(dir);
  await s.save('vm1', syntheticVm(1), { created: '2026-01-01T00:00:00.000Z' });
  await s.save('vm2', syntheticVm(2), { created: '2026-01-02T00:00:00.000Z' });
});

describe('firmament snapshot', () => {
  it('is in the top-level help, with its options', () => {
    const r = spawnSync('node', [CLI, '--help'], { encoding: 'utf8' });
    expect(r.stdout).toMatch(/^  snapshot +list, inspect, verify, diff, push or pull VM snapshots/m);
    expect(r.stdout).toContain('firmament snapshot <save|restore|list|inspect|verify|diff|push|pull|delete|gc>');
    expect(r.stdout).toContain('--store DIR');
  });

  it('list and inspect, as text and as JSON', () => {
    const l = cli('list', '--store', dir, '--json');
    expect(l.status).toBe(0);
    const rows = JSON.parse(l.stdout) as { ref: string; memoryBytes: number; zeroChunks: number }[];
    expect(rows.map((r) => r.ref)).toEqual(['vm1', 'vm2']);
    expect(rows[0]).toMatchObject({ memoryBytes: 0xa0000 + 0x200000, zeroChunks: 35 });
    expect(cli('list', '--store', dir).stdout).toMatch(/^vm1 +2\.6 MiB memory/m);
    const i = cli('inspect', 'vm2', '--store', dir);
    expect(i.status).toBe(0);
    expect(i.stdout).toContain('chunks     42 of 64 KiB: 35 zero (not stored), 7 distinct stored, 3 shared with other snapshots');
    expect(i.stdout).toContain('memory     2.6 MiB in [0x0, 0xa0000) [0x100000, 0x300000)');
  });

  it('$FIRMAMENT_SNAPSHOTS picks the store when --store is absent', () => {
    const r = spawnSync('node', [CLI, 'snapshot', 'list', '--json'], { encoding: 'utf8', env: { ...process.env, FIRMAMENT_SNAPSHOTS: dir } });
    expect(JSON.parse(r.stdout)).toHaveLength(2);
  });

  it('diff exits 1 and lists the changed GPA ranges and state fields; 0 for identical snapshots', () => {
    const d = cli('diff', 'vm1', 'vm2', '--store', dir);
    expect(d.status).toBe(1);
    expect(d.stdout).toContain('memory: 4 of 42 chunks differ, 256 KiB');
    expect(d.stdout).toContain('[0x0, 0x30000)  192 KiB');
    expect(d.stdout).toContain('$.cpu.rip');
    expect(cli('diff', 'vm1', 'vm1', '--store', dir).status).toBe(0);
  });

  it('verify exits 0 on a sound store and 1 naming the rotten blob', async () => {
    const own = tempStoreDir();
    await SnapshotStore.open(own).save('vm1', syntheticVm(1));
    expect(cli('verify', '--store', own).stdout).toMatch(/^vm1: OK \(10 blobs/);
    const f = chunkBlobPath(own, 'vm1', 0x20000);
    const b = readFileSync(f);
    b[7]! ^= 0x20;
    writeFileSync(f, b);
    const r = cli('verify', '--store', own, '--json');
    expect(r.status).toBe(1);
    const doc = JSON.parse(r.stdout) as { ok: boolean; snapshots: { problems: string[] }[] };
    expect(doc.ok).toBe(false);
    expect(doc.snapshots[0]!.problems[0]).toMatch(new RegExp(`memory chunk at GPA 0x20000: blob sha256:${path.basename(f)} is corrupt`));
  });

  it('bad input is status 2 with the store error, never a stack trace', () => {
    const r = cli('inspect', 'nope', '--store', dir);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/SnapshotStoreError: .*no snapshot 'nope' \(have: vm1, vm2\)/);
    expect(r.stderr).not.toMatch(/\n\s+at /);
    expect(cli('frobnicate', '--store', dir).stderr).toMatch(/unknown subcommand 'frobnicate'/);
    expect(cli('diff', 'vm1', '--store', dir).status).toBe(2);
    expect(cli('push', 'vm1', 'ftp://x/y', '--store', dir).stderr).toMatch(/RegistryError: registry reference ftp:\/\/x\/y: only http\(s\) registries/);
  });

  it.skipIf(!hasDockerRegistry)('push then pull through a registry (docker-registry on loopback)', async () => {
    const reg = await startRegistry();
    try {
      const p = await cliAsync('push', 'vm1', `${reg.url}/fm/snaps`, '--store', dir, '--json');
      expect(p.status).toBe(0);
      expect(JSON.parse(p.stdout)).toMatchObject({ remote: `${reg.url}/fm/snaps:vm1`, transferredBlobs: 9 });
      const other = tempStoreDir();
      const q = await cliAsync('pull', `${reg.url}/fm/snaps:vm1`, 'copy', '--store', other);
      expect(q.status).toBe(0);
      expect(q.stdout).toMatch(/^pulled .*fm\/snaps:vm1 as copy: 9 blob\(s\) downloaded, 0 already in the store/);
      expect((await SnapshotStore.open(other).verify('copy')).ok).toBe(true);
    } finally {
      reg.stop();
    }
  });
});
