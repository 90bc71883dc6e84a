/**
 * The management side end to end, as a user drives it: `firmament run
 * --monitor`, `firmament profile learn`, `firmament anomalies --follow
 * --notify URL` (a webhook receiving JSON POSTs), `firmament anomalies --json`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:http';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { MonitorClient } from '../../tui/monitor-client.js';
import type { AnomalyNotice } from '../../machine/debug/protocol.js';
import { buildImages } from '../../tools/build-images.mjs';

const CLI = path.resolve(import.meta.dirname, '../../tools/firmament.mjs');

function start(args: string[]): { child: ChildProcess; done: Promise<{ code: number | null; out: string; err: string }> } {
  const child = spawn('node', [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  return { child, done: new Promise((resolve) => child.on('close', (code) => resolve({ code, out, err }))) };
}

async function until<T>(what: string, probe: () => T | undefined | Promise<T | undefined>, tries = 1200): Promise<T> {
  for (let i = 0; i < tries; i++) {
    const v = await probe();
    if (v !== undefined) return v;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`gave up waiting for ${what}`);
}

describe('firmament profile / anomalies against a running gateway', () => {
  it('learns a profile, then notifies a COM1 flood on --follow and to a webhook', async () => {
    const elf = (await buildImages({ quiet: true })).guests['gateway-hostile']!;
    const dir = mkdtempSync(path.join(tmpdir(), 'fm-anomaly-cli-'));
    const sock = path.join(dir, 'm.sock');
    const profileFile = path.join(dir, 'gateway.json');
    const posts: AnomalyNotice[] = [];
    const hook = createServer((req, res) => {
      let body = '';
      req.on('data', (d: Buffer) => (body += d.toString()));
      req.on('end', () => {
        if (req.headers['content-type'] === 'application/json') posts.push(JSON.parse(body) as AnomalyNotice);
        res.end('ok');
      });
    });
    await new Promise<void>((r) => hook.listen(0, '127.0.0.1', r));
    const port = (hook.address() as { port: number }).port;
    const run = start(['run', elf, '--clock', 'virtual', '--paused', '--monitor', sock, '--cmdline', 'secs=0 seed=11 behaviour=3']);
    let client: MonitorClient | undefined;
    try {
      await until('the monitor socket', () => (existsSync(sock) ? true : undefined));
      client = await MonitorClient.connect(sock);
      const learn = start(['profile', 'learn', '--monitor', sock, '--for', '1500ms', '--apply', '--out', profileFile]);
      // Resume only once the learner is in place, so it sees the gateway from its first instruction.
      await until('the learner', async () => ((await client!.request('profile-get', {})).learning > 0 ? true : undefined));
      await client.request('resume', {});
      const learned = await learn.done;
      expect(learned.err).toContain(`profile of gateway-hostile written to ${profileFile} (and in force)`);
      expect(learned.code).toBe(0);
      const doc = JSON.parse(readFileSync(profileFile, 'utf8')) as { format: string; learned: { toMs: number }; sets: { ioPorts: string[] } };
      expect(doc.format).toBe('firmament-behaviour-profile');
      expect(doc.learned.toMs).toBeGreaterThanOrEqual(1500);
      expect(doc.sets.ioPorts).toContain('0x2f8');
      expect((await start(['profile', 'check', profileFile]).done).out).toContain(`${profileFile}: ok`);

      const follow = start(['anomalies', '--monitor', sock, '--follow', '--json', '--notify', `http://127.0.0.1:${port}/hook`]);
      const flood = await until('the COM1 flood at the webhook', () => posts.find((a) => a.behaviour === 'com1-flood'));
      expect(flood.description).toMatch(/^COM1 flood: \d+ bytes sent in \d+ ms, the profile allows \d+$/);
      expect(flood.vm).toBe('gateway-hostile');
      expect(typeof flood.observed === 'number' && flood.observed > (flood.expected as number)).toBe(true);
      expect(flood.window.toMs).toBeGreaterThan(flood.window.fromMs);

      const listed = await start(['anomalies', '--monitor', sock, '--json']).done;
      const { anomalies } = JSON.parse(listed.out) as { anomalies: AnomalyNotice[] };
      expect(anomalies.map((a) => a.id)).toContain(flood.id);
      const text = await start(['anomalies', '--monitor', sock]).done;
      expect(text.out).toMatch(new RegExp(`#${flood.id} .* gateway-hostile  HIGH +COM1 flood`));

      await client.request('stop', {});
      const followed = await follow.done;
      expect(followed.code).toBe(0);
      const lines = followed.out.trim().split('\n').map((l) => JSON.parse(l) as AnomalyNotice);
      expect(lines.find((a) => a.id === flood.id)?.description).toBe(flood.description);
      // Once per episode: the flood goes on until the stop, its anomaly came once.
      expect(lines.filter((a) => a.behaviour === 'com1-flood')).toHaveLength(1);
      expect(posts.filter((a) => a.behaviour === 'com1-flood')).toHaveLength(1);
      await run.done;
    } finally {
      client?.close();
      run.child.kill();
      hook.close();
    }
  }, 300_000);

  it('refuses a bad profile file before it builds a machine, naming file and field', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'fm-anomaly-cli-'));
    const bad = path.join(dir, 'bad.json');
    (await import('node:fs')).writeFileSync(bad, JSON.stringify({ format: 'firmament-behaviour-profile', version: 1, window: {}, thresholds: { rates: { dirtyPages: 'many' } } }));
    const r = await start(['run', path.resolve(import.meta.dirname, '../../images/build/guests/hello.elf'), '--profile', bad]).done;
    expect(r.code).toBe(2);
    expect(r.err.trim()).toBe(`firmament: ProfileError: ${bad}: thresholds.rates.dirtyPages: Invalid input: expected number, received string`);
    const c = await start(['profile', 'check', bad]).done;
    expect(c.code).toBe(2);
    expect(c.err).toContain(`${bad}: thresholds.rates.dirtyPages`);
  }, 60_000);
});
