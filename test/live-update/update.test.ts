import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildImages } from '../../tools/build-images.mjs';
import { createGuestMachine } from '../../vmm/run-guests.js';
import type { MonitorClient } from '../../tui/monitor-client.js';
import type { LiveUpdateReport } from '../../machine/debug/protocol.js';
import { CLI, connectMonitor, copyProject, ROOT, startRun, type RunProcess } from './project-copy.js';

/**
 * Live update as a user does it: `firmament run --shared-ram --monitor SOCK`
 * of the uptick guest (2 vCPUs: the APs count while the BSP dirties 512 KiB
 * every 50 ms round of its PIT timer and prints the round), then `update` to a
 * second copy of the project whose VERSION hypercall answers 2. The COM1
 * transcript equals an un-updated run's apart from the version line, the
 * exit status is the guest's, `translate` answers the same, and guest RAM
 * stays in the same memfd with no private copy in the new process. Refusal,
 * a crash and a hang of the new version roll back: the run finishes exactly
 * like an un-updated one. Updates chain. Guests run 25-80 s of PIT time in
 * real time: long enough for a successor to start on a loaded machine.
 */
const MiB = 1024 * 1024;
const MEM = 32 * MiB;
let uptick: string;
let tmp: string;
let v2: string;
let v3: string;
let refuser: string;

beforeAll(async () => {
  uptick = (await buildImages({ quiet: true })).guests['uptick']!;
  tmp = mkdtempSync(join(tmpdir(), 'fm-liveupdate-'));
  v2 = copyProject(join(tmp, 'v2'), [{ file: 'hypervisor/hypercalls.ts', from: /export const HC_VERSION = 1;/, to: 'export const HC_VERSION = 2;' }]);
  v3 = copyProject(join(tmp, 'v3'), [{ file: 'hypervisor/hypercalls.ts', from: /export const HC_VERSION = 1;/, to: 'export const HC_VERSION = 3;' }]);
  // A newer build that no longer reads version-1 records.
  refuser = copyProject(join(tmp, 'refuser'), [
    { file: 'vmm/live-update/state.ts', from: /export const LIVE_UPDATE_VERSION = 1;/, to: 'export const LIVE_UPDATE_VERSION = 5;' },
    { file: 'vmm/live-update/state.ts', from: /export const OLDEST_READABLE_VERSION = 1;/, to: 'export const OLDEST_READABLE_VERSION = 4;' },
  ]);
}, 600_000);

afterAll(() => {
  // A successor that just exited may still be closing its socket files there.
  if (tmp) rmSync(tmp, { recursive: true, force: true, maxRetries: 10, retryDelay: 200 });
});

const VERSION_LINE = /^uptick: hypervisor version \d+\r?\n/gm;
const VERSION = /^uptick: hypervisor version \d+(?=\r?$)/gm;
const strip = (s: string): string => s.replace(VERSION_LINE, '');

/** The transcript of an un-updated run (virtual time makes it independent of pacing). */
async function reference(cmdline: string, vcpus: number): Promise<string> {
  const g = createGuestMachine([{ path: uptick, memBytes: MEM, vcpus, cmdline }], { pcpus: 1, pace: 'virtual' });
  try {
    const exit = await g.machine.run({ timeoutMs: 600_000 });
    expect(exit.code).toBe(1);
    return g.vms[0]!.serial;
  } finally {
    g.hypervisor.close();
    g.machine.close();
  }
}

async function until(cond: () => boolean, what: string, timeoutMs = 120_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function start(sock: string, cmdline: string, vcpus: number, env: Record<string, string> = {}): RunProcess {
  return startRun([uptick, '--shared-ram', '--monitor', sock, '--mem', '32M', '--vcpus', String(vcpus), '--cmdline', cmdline], env);
}

/** GVA -> GPA -> HPA of a few addresses on vCPU 0 (monitor CPU 1: CPU 0 is the host machine's own). */
async function translations(c: MonitorClient): Promise<string[]> {
  const out: string[] = [];
  for (const a of [0x100000, 0x101000, 0x104000, 0x180000, 0x1ff000]) {
    const w = await c.request('translate', { address: a, cpu: 1 });
    out.push(w.result.ok ? `${w.result.physical} -> ${w.ept?.hostPhysical ?? 'none'} via ${w.ept?.levels.map((l) => l.entryAddress).join(',')}` : `fault ${w.result.reason}`);
  }
  return out;
}

function okReport(r: LiveUpdateReport): Extract<LiveUpdateReport, { ok: true }> {
  if (!r.ok) throw new Error(`update rolled back: ${r.reason}`);
  return r;
}

describe('live update across processes', () => {
  it('updates to a copy with a new hypervisor version: same transcript apart from the version, same translations, same memfd, no copy', async () => {
    const cmdline = 'rounds=600 period=50';
    const ref = reference(cmdline, 2);
    const sock = join(tmp, 'a.sock');
    const run = start(sock, cmdline, 2);
    const c = await connectMonitor(sock);
    await until(() => run.stdout().includes('round 3 '), 'round 3');
    const before = await translations(c);
    expect(before.filter((t) => !t.startsWith('fault')).length).toBeGreaterThanOrEqual(3);
    const r = okReport(await c.request('update', { to: v2 }));
    c.close();
    expect(r.to.hcVersion).toBe(2);
    expect(r.to.pid).not.toBe(r.from.pid);
    expect(r.shm.successorInode).toBe(r.shm.inode);
    // Guest RAM (32 MiB, all of it populated) was not copied into the new process's private memory.
    expect(r.rssAnonKiB.afterAdopt - r.rssAnonKiB.beforeAdopt).toBeLessThan(MEM / 1024 / 8);
    expect(r.guestRamBytes).toBe(MEM);
    expect(r.blackout).toHaveLength(1);
    expect(r.blackout[0]!.blackoutMs).toBeGreaterThan(0);

    await new Promise((res) => setTimeout(res, 500));
    const c2 = await connectMonitor(sock);
    expect(await translations(c2)).toEqual(before);
    c2.close();

    expect(await run.exited).toBe(1);
    const out = run.stdout();
    expect(out.match(VERSION)).toEqual(['uptick: hypervisor version 1', 'uptick: hypervisor version 2']);
    expect(strip(out)).toBe(strip(await ref));
    expect(out).toContain('uptick: round 600 ');
    expect(run.stderr()).toBe('');
  }, 600_000);

  // A refusal comes at the rehearsal, before any pause ('prepare'); a crash or a hang once the VMs are paused ('takeover').
  const rollbacks: [string, () => { to?: string; env?: Record<string, string>; timeoutMs?: number }, RegExp, 'prepare' | 'takeover'][] = [
    ['a new version that refuses the state', () => ({ to: refuser }), /refused the state: live-update: state field 'version': record version 1 is older than this build reads \(4\.\.5\)/, 'prepare'],
    ['a new version that crashes mid-takeover (SIGKILL)', () => ({ to: v2, env: { FIRMAMENT_TAKEOVER_FAULT: 'crash' } }), /died \(killed by SIGKILL\)/, 'takeover'],
    ['a new version that never answers (timeout)', () => ({ to: v2, env: { FIRMAMENT_TAKEOVER_FAULT: 'hang' }, timeoutMs: 1500 }), /did not answer in time .*killed \(killed by SIGKILL\)/, 'takeover'],
  ];
  for (const [label, how, reason, phase] of rollbacks) {
    it(`rolls back on ${label}: the guest finishes exactly like an un-updated run`, async () => {
      const cmdline = 'rounds=500 period=50';
      const ref = reference(cmdline, 1);
      const { to, env, timeoutMs } = how();
      const sock = join(tmp, `rb-${Math.random().toString(36).slice(2)}.sock`);
      const run = start(sock, cmdline, 1, env);
      const c = await connectMonitor(sock);
      await until(() => run.stdout().includes('round 2 '), 'round 2');
      const r = await c.request('update', { ...(to ? { to } : {}), ...(timeoutMs ? { timeoutMs } : {}) });
      expect(r.ok).toBe(false);
      if (r.ok) return;
      expect(r.phase).toBe(phase);
      expect(r.reason).toMatch(reason);
      // The old process still serves the monitor and runs the guest.
      expect((await c.request('hello', {})).protocol).toBeTruthy();
      c.close();
      expect(await run.exited).toBe(1);
      expect(run.stdout()).toBe(await ref);
    }, 600_000);
  }

  it('chains three updates (to v2, v3, then back to this checkout with the CLI)', async () => {
    const cmdline = 'rounds=1600 period=50 kib=64';
    const ref = reference(cmdline, 1);
    const sock = join(tmp, 'chain.sock');
    const run = start(sock, cmdline, 1);
    const pids = new Set<number>();
    for (const [i, to] of [v2, v3].entries()) {
      const c = await connectMonitor(sock);
      await until(() => run.stdout().includes(`round ${3 + i * 10} `), `round ${3 + i * 10}`);
      const r = okReport(await c.request('update', { to }));
      c.close();
      pids.add(r.from.pid).add(r.to.pid);
      await new Promise((res) => setTimeout(res, 500));
    }
    await until(() => run.stdout().includes('round 23 '), 'round 23');
    // Not spawnSync: this process must keep reading the run's stdout (a full pipe would block the guest's COM1).
    const cli = await promisify(execFile)(process.execPath, [CLI, 'update', '--monitor', sock, '--to', ROOT, '--json'], { encoding: 'utf8', timeout: 300_000 });
    const last = okReport(JSON.parse(cli.stdout) as LiveUpdateReport);
    expect(last.to.hcVersion).toBe(1);
    pids.add(last.to.pid);
    expect(pids.size).toBe(4);
    expect(await run.exited).toBe(1);
    const out = run.stdout();
    expect(out.match(VERSION)).toEqual([1, 2, 3, 1].map((v) => `uptick: hypervisor version ${v}`));
    expect(strip(out)).toBe(strip(await ref));
  }, 900_000);
});
