import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createConnection } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildImages } from '../../tools/build-images.mjs';
import { createBootMachine } from '../../vmm/boot.js';
import type { PcMachine } from '../../machine/platform/pc.js';
import { DebugSession } from '../../machine/debug/session.js';
import type { MonitorEvent } from '../../machine/debug/protocol.js';
import { startMonitorServer, type MonitorServer } from '../../tools/cli/monitor-server.js';
import { MonitorClient } from '../../tui/monitor-client.js';

let dir: string;
let machine: PcMachine;
let session: DebugSession;
let server: MonitorServer;
let client: MonitorClient;
let run: Promise<unknown>;

beforeAll(async () => {
  await buildImages({ quiet: true });
});

async function start(): Promise<void> {
  dir = mkdtempSync(join(tmpdir(), 'fm-monitor-'));
  machine = createBootMachine({ memBytes: 64 * 1024 * 1024, cpus: 1, faults: [], pace: 'virtual' });
  session = new DebugSession(machine, { label: 'test boot' });
  session.debugger.pause();
  run = machine.run({ timeoutMs: 60_000 });
  server = await startMonitorServer(session, join(dir, 'm.sock'));
  client = await MonitorClient.connect(server.path);
}

afterEach(async () => {
  client?.close();
  await server?.close();
  session?.close();
  if (!machine.exit) machine.stop('test done');
  if (machine.paused) machine.resume();
  await run;
  machine.close();
  rmSync(dir, { recursive: true, force: true });
});

const nextEvent = <K extends MonitorEvent['event']>(c: MonitorClient, kind: K): Promise<Extract<MonitorEvent, { event: K }>> =>
  new Promise((resolve) => {
    const off = c.onEvent((ev) => {
      if (ev.event !== kind) return;
      off();
      resolve(ev as Extract<MonitorEvent, { event: K }>);
    });
  });

describe('monitor socket (newline-delimited JSON)', () => {
  it('answers hello and status, sets a POST breakpoint, streams the stop, console and POST events', async () => {
    await start();
    const hello = await client.request('hello', {});
    expect(hello).toMatchObject({ protocol: 'firmament-monitor', version: 1, machine: { label: 'test boot', cpus: 1 }, cpus: ['cpu0'] });
    expect(hello.commands).toContain('snapshot');
    expect((await client.request('status', {})).state).toBe('paused');
    const bp = await client.request('break', { spec: 'post MEMTEST_PASS' });
    expect(bp).toMatchObject({ id: 1, kind: 'post', text: 'post 0x33 MEMTEST_PASS' });
    const posts: string[] = [];
    let consoleText = '';
    client.onEvent((ev) => {
      if (ev.event === 'post') posts.push(ev.data.hex);
      if (ev.event === 'console' && ev.data.id === 'com1') consoleText += ev.data.text;
    });
    const stopped = nextEvent(client, 'stop');
    await client.request('resume', {});
    const stop = await stopped;
    expect(stop.data).toMatchObject({ reason: 'post-code', code: '0x33' });
    expect(posts.slice(-1)).toEqual(['0x33']);
    expect(posts.slice(0, 3)).toEqual(['0x01', '0x02', '0x03']);
    expect(consoleText).toContain('[POST 0x32]');
    const snap = await client.request('snapshot', { parts: ['cpu', 'timeline', 'disassembly'], disassembly: { count: 4 } });
    expect(snap.status.state).toBe('paused');
    expect(snap.cpu?.mode).toBe('long');
    expect(snap.timeline?.last?.name).toBe('MEMTEST_PASS');
    expect(snap.disassembly?.lines.some((l) => l.current)).toBe(true);
    expect(snap.memory).toBeUndefined();
    const walk = await client.request('translate', { address: '0x100000' });
    expect(walk.result).toMatchObject({ ok: true, physical: '0x0000000000100000' });
    const step = await client.request('step', { count: 3 });
    expect(step.reason).toBe('step');
  });

  it('reports errors as {ok:false} without dropping the connection', async () => {
    await start();
    await expect(client.request('break', { spec: 'post 0x1ff' })).rejects.toThrow(/not a POST code/);
    await expect(client.request('cpu', { cpu: 7 })).rejects.toThrow(/no CPU 7/);
    const raw = createConnection(server.path);
    const lines: string[] = [];
    await new Promise<void>((resolve) => {
      raw.on('data', (b) => {
        lines.push(...b.toString().split('\n').filter(Boolean));
        if (lines.length >= 2) resolve();
      });
      raw.write('not json\n{"id": 9, "cmd": "frobnicate"}\n');
    });
    raw.destroy();
    expect(JSON.parse(lines[0]!)).toMatchObject({ ok: false, error: expect.stringMatching(/bad JSON/) });
    expect(JSON.parse(lines[1]!)).toMatchObject({ id: 9, ok: false, error: expect.stringMatching(/unknown command 'frobnicate'/) });
    expect((await client.request('status', {})).state).toBe('paused');
  });

  it('refuses a second server on a live socket path', async () => {
    await start();
    await expect(startMonitorServer(session, server.path)).rejects.toThrow(/already listening/);
  });
});
