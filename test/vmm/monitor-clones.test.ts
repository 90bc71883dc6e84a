/**
 * Linked clones made through the monitor of a running machine (`clone`,
 * `firmament snapshot clone`): of a running VM as it is now, or of a stored
 * snapshot. Each clone continues exactly where its source was, shares the
 * source's pages copy-on-write, and the machine ends when every VM has.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildImages } from '../../tools/build-images.mjs';
import { createGuestMachine } from '../../vmm/run-guests.js';
import { vmCloneCommand, vmSnapshotCommands } from '../../tools/cli/vm-snapshots.js';
import { DebugSession } from '../../machine/debug/session.js';
import type { ClonesMade } from '../../machine/debug/protocol.js';
import { MonitorClient } from '../../tui/monitor-client.js';

const MiB = 1024 * 1024;
const CLI = path.resolve(import.meta.dirname, '../../tools/firmament.mjs');
const dir = mkdtempSync(path.join(tmpdir(), 'fm-monclone-'));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
// Paced by its PIT (4 MiB at 8 MiB/s of guest time, 8 passes): still running when the clone request comes.
const DIRTIER_ARGS = 'mib=4 passes=8 rate=8192';
let dirtier: string;

beforeAll(async () => {
  dirtier = (await buildImages({ quiet: true })).guests['dirtier']!;
}, 120_000);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('linked clones from the monitor', () => {
  it('clones a running dirtier: every clone finishes with the source checksum, copying on write, and refusals name the reason', async () => {
    const g = createGuestMachine([{ path: dirtier, memBytes: 16 * MiB, vcpus: 1, cmdline: DIRTIER_ARGS }], { pcpus: 1, extraHostBytes: 24 * MiB });
    const store = path.join(dir, 'store');
    const session = new DebugSession(g.machine, { snapshots: vmSnapshotCommands(g.hypervisor, store), clones: vmCloneCommand(g.hypervisor, store) });
    const source = g.vms[0]!;
    const running = g.machine.run({ timeoutMs: 120_000 });
    try {
      while (!source.serial.includes('pass 2/8 done') && source.state !== 'stopped') await sleep(5);
      expect(source.state).not.toBe('stopped');
      const r = await session.handleAsync({ cmd: 'clone', args: { count: 2 } });
      expect(r.ok, JSON.stringify(r)).toBe(true);
      const made = (r as { result: ClonesMade }).result;
      expect(made.source).toBe('VM dirtier');
      expect(made.imageBytes).toBe(16 * MiB);
      expect(made.clones.map((c) => c.name)).toEqual(['dirtier-0', 'dirtier-1']);

      // Refusals change nothing: a taken name, both sources, more than the host can hold.
      const again = await session.handleAsync({ cmd: 'clone', args: { count: 1 } });
      expect(again).toMatchObject({ ok: false, error: expect.stringMatching(/a VM named 'dirtier-0' already runs on this machine/) });
      const both = await session.handleAsync({ cmd: 'clone', args: { count: 1, vm: 'dirtier', from: 'x', name: 'b' } });
      expect(both).toMatchObject({ ok: false, error: expect.stringMatching(/not both/) });
      const big = await session.handleAsync({ cmd: 'clone', args: { count: 64, name: 'many' } });
      expect(big).toMatchObject({ ok: false, error: expect.stringMatching(/64 clone\(s\) of a 16\.0 MiB VM need .* of host RAM .* free \(firmament run --clone-room SIZE/) });
      const bad = await session.handleAsync({ cmd: 'clone', args: { count: 0 } });
      expect(bad.ok).toBe(false);
      expect(g.hypervisor.vms.map((v) => v.name)).toEqual(['dirtier', 'dirtier-0', 'dirtier-1']);

      const exit = await running;
      expect(exit.reason).toBe('debug-exit');
      const checksum = /dirtier: checksum (0x[0-9a-f]{16})/.exec(source.serial)?.[1];
      expect(checksum, source.serial).toBeDefined();
      for (const vm of g.hypervisor.vms.slice(1)) {
        expect(vm.exit, `${vm.name}\n${vm.serial}`).toMatchObject({ reason: 'debug-exit', code: 1 });
        // The clone's console is the source's up to the clone, then its own: the same run to the end.
        expect(vm.serial).toBe(source.serial);
        expect(vm.vmMemory.stats().cowCopies).toBeGreaterThan(0);
      }
    } finally {
      g.machine.stop();
      await running;
      g.hypervisor.close();
      g.machine.close();
    }
  }, 180_000);

  it('a clone that runs out of host frames copying on write stops with a report; the source and the machine go on', async () => {
    // 6 clones of a 16 MiB image fit (16 MiB + headroom), but each copies its 7 MiB working set on write.
    const g = createGuestMachine([{ path: dirtier, memBytes: 16 * MiB, vcpus: 1, cmdline: 'mib=7 passes=2 rate=8192' }], { pcpus: 1 });
    const source = g.vms[0]!;
    const running = g.machine.run({ timeoutMs: 120_000 });
    try {
      while (!source.serial.includes('working set') && source.state !== 'stopped') await sleep(5);
      const made = await vmCloneCommand(g.hypervisor, path.join(dir, 'oom-store'))({ count: 6 });
      expect(made.clones).toHaveLength(6);
      const exit = await running;
      expect(exit).toMatchObject({ reason: 'debug-exit', code: 1 });
      const checksum = /dirtier: checksum (0x[0-9a-f]{16})/.exec(source.serial)?.[1];
      expect(checksum, source.serial).toBeDefined();
      const clones = g.hypervisor.vms.slice(1);
      const starved = clones.filter((vm) => vm.exit?.reason === 'error');
      expect(starved.length).toBeGreaterThan(0);
      for (const vm of starved) expect(vm.exit?.detail).toMatch(/out of host memory: GPA 0x[0-9a-f]+ needs a frame of its own \(write\)/);
      for (const vm of clones.filter((c) => !starved.includes(c))) expect(/dirtier: checksum (0x[0-9a-f]{16})/.exec(vm.serial)?.[1]).toBe(checksum);
      // A stopped VM is not cloned.
      await expect(vmCloneCommand(g.hypervisor, path.join(dir, 'oom-store'))({ count: 1, vm: starved[0]!.name, name: 'late' })).rejects.toThrow(/has stopped \(error\)/);
    } finally {
      g.machine.stop();
      await running.catch(() => undefined);
      g.hypervisor.close();
      g.machine.close();
    }
  }, 180_000);

  it('firmament snapshot clone REF --monitor: clones of a stored snapshot start in a running `run`', async () => {
    const store = path.join(dir, 'cli-store');
    const sock = path.join(dir, 'm.sock');
    // --paused: the VM waits at its entry, so the snapshot and the clones are taken there, whatever the load.
    const run = spawn(process.execPath, [CLI, 'run', dirtier, '--mem', '16M', '--cmdline', DIRTIER_ARGS, '--clone-room', '40M', '--monitor', sock, '--store', store, '--json', '--paused'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let runOut = '';
    run.stdout!.on('data', (d: Buffer) => (runOut += d.toString()));
    run.stderr!.resume();
    const runExit = new Promise<number | null>((r) => run.once('exit', r));
    const cli = async (...args: string[]): Promise<{ code: number | null; out: string }> => {
      const c = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      c.stdout!.on('data', (d: Buffer) => (out += d.toString()));
      c.stderr!.on('data', (d: Buffer) => (out += d.toString()));
      return { code: await new Promise<number | null>((r) => c.once('exit', r)), out };
    };
    try {
      while (!existsSync(sock)) await sleep(20);
      const saved = await cli('snapshot', 'save', 'base', '--monitor', sock, '--json');
      expect(saved.code, saved.out).toBe(0);
      const made = await cli('snapshot', 'clone', 'base', '--monitor', sock, '--count', '2', '--name', 'kid', '--json');
      expect(made.code, made.out).toBe(0);
      expect(JSON.parse(made.out)).toMatchObject({ source: 'snapshot base', clones: [{ name: 'kid-0', index: 0 }, { name: 'kid-1', index: 1 }] });
      const usage = await cli('snapshot', 'clone', 'base', '--vm', 'dirtier', '--monitor', sock);
      expect(usage.code).toBe(2);
      expect(usage.out).toMatch(/REF \(a stored snapshot\) or --vm/);
      const client = await MonitorClient.connect(sock);
      await client.request('resume', {});
      client.close();
      expect(await runExit).toBe(1); // every VM exited 0 through isa-debug-exit: (0 << 1) | 1
      const doc = JSON.parse(runOut) as { guests: { name: string; exit: { reason: string; code: number } | null; serial: string }[] };
      expect(doc.guests.map((x) => x.name)).toEqual(['dirtier', 'kid-0', 'kid-1']);
      const sum = (s: string) => /dirtier: checksum (0x[0-9a-f]{16})/.exec(s)?.[1];
      for (const x of doc.guests) {
        expect(x.exit).toMatchObject({ reason: 'debug-exit', code: 1 });
        expect(sum(x.serial)).toBe(sum(doc.guests[0]!.serial));
      }
    } finally {
      run.kill();
      await runExit;
    }
  }, 180_000);
});
