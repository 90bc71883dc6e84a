/**
 * `firmament boot --guest ... --monitor`: the full boot path starts the
 * security service at the handoff, so a booted VM is learned, held to a
 * profile and reported over the monitor like a `run --monitor` one.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { MonitorClient } from '../../tui/monitor-client.js';
import type { AnomalyNotice } from '../../machine/debug/protocol.js';
import { buildImages } from '../../tools/build-images.mjs';

const CLI = path.resolve(import.meta.dirname, '../../tools/firmament.mjs');

async function until<T>(what: string, probe: () => T | undefined | Promise<T | undefined>, tries = 3000): Promise<T> {
  for (let i = 0; i < tries; i++) {
    const v = await probe();
    if (v !== undefined) return v;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`gave up waiting for ${what}`);
}

describe('boot --guest --monitor: behaviour profiles', () => {
  it('refuses profiles before the handoff, then learns the booted gateway and reports its port scan as an anomaly event', async () => {
    const elf = (await buildImages({ quiet: true })).guests['gateway-hostile']!;
    const dir = mkdtempSync(path.join(tmpdir(), 'fm-anomaly-boot-'));
    const sock = path.join(dir, 'm.sock');
    // Real-time pacing: the gateway turns hostile 2-5 s of guest time after its start, the learner
    // starts within a poll (50 ms wall) of the handoff and learns 1 s.
    const child = spawn('node', [CLI, 'boot', '--paused', '--monitor', sock, '--guest', elf, '--guest-cmdline', 'secs=0 seed=11 behaviour=0'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    const exited = new Promise<number | null>((r) => child.on('close', r));
    let client: MonitorClient | undefined;
    try {
      await until('the monitor socket', () => (existsSync(sock) ? true : undefined));
      client = await MonitorClient.connect(sock);
      const events: AnomalyNotice[] = [];
      client.onEvent((ev) => {
        if (ev.event === 'anomaly') events.push(ev.data);
      });
      // Paused at the reset vector: no hypervisor, no VMs yet.
      await expect(client.request('profile-get', {})).rejects.toThrow(/not handed off to the hypervisor yet/);
      expect((await client.request('anomalies', {})).anomalies).toEqual([]);
      await client.request('resume', {});
      const vm = await until('the handoff', async () => {
        try {
          return (await client!.request('profile-get', {})).vm;
        } catch {
          return undefined;
        }
      });
      expect(vm).toBe('gateway-hostile');
      const learned = await client.request('profile-learn', { forMs: 1000, apply: true });
      expect((learned.profile as { sets: { ioPorts: string[] } }).sets.ioPorts).toContain('0x3f8');
      const scan = await until('the port-scan anomaly event', () => events.find((a) => a.behaviour === 'port-scan'));
      expect(scan.vm).toBe('gateway-hostile');
      expect(scan.description).toMatch(/^I\/O port scan: \d+ ports outside the profile touched/);
      const { anomalies } = await client.request('anomalies', {});
      expect(anomalies.map((a) => a.id)).toContain(scan.id);
      await client.request('stop', {});
      await exited;
    } finally {
      client?.close();
      child.kill();
    }
    expect(err).not.toMatch(/Error:/);
  }, 300_000);
});
