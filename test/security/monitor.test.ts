/**
 * Hostile monitor clients (issue 11): every request is validated, a line is
 * capped, and nothing a client sends crashes the process or wedges the machine.
 */
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createConnection, type Socket } from 'node:net';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildImages } from '../../tools/build-images.mjs';
import { createBootMachine } from '../../vmm/boot.js';
import type { PcMachine } from '../../machine/platform/pc.js';
import { DebugSession } from '../../machine/debug/session.js';
import { checkRequest, MAX_STEP_COUNT } from '../../machine/debug/request-schema.js';
import { lineReader, MAX_LINE_BYTES } from '../../machine/debug/ndjson.js';
import { startMonitorServer, type MonitorServer } from '../../tools/cli/monitor-server.js';

let dir: string;
let machine: PcMachine | null = null;
let session: DebugSession | null = null;
let server: MonitorServer | null = null;

beforeAll(async () => {
  await buildImages({ quiet: true });
});

afterEach(async () => {
  await server?.close();
  session?.close();
  machine?.close();
  server = null;
  session = null;
  machine = null;
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function newSession(): DebugSession {
  machine = createBootMachine({ memBytes: 64 * 1024 * 1024, cpus: 1, faults: [], pace: 'virtual' });
  session = new DebugSession(machine, { label: 'hostile' });
  return session;
}

/** A raw client: writes what it is given, collects response lines (events are skipped). */
function rawClient(path: string): Promise<{ socket: Socket; next(): Promise<Record<string, unknown>> }> {
  return new Promise((resolve, reject) => {
    const socket = createConnection(path);
    const lines: Record<string, unknown>[] = [];
    const waiting: ((v: Record<string, unknown>) => void)[] = [];
    socket.on(
      'data',
      lineReader((line) => {
        const v = JSON.parse(line) as Record<string, unknown>;
        if ('event' in v) return;
        const w = waiting.shift();
        if (w) w(v);
        else lines.push(v);
      }),
    );
    socket.once('error', reject);
    socket.once('connect', () =>
      resolve({
        socket,
        next: () => new Promise((r) => (lines.length ? r(lines.shift()!) : waiting.push(r))),
      }),
    );
  });
}

describe('monitor request validation', () => {
  it('answers null, arrays, numbers and strings with an error instead of throwing', () => {
    const s = newSession();
    for (const v of [null, [], 42, 'hello', true, { cmd: 7 }, { cmd: 'hello', id: { x: 1 } }, { cmd: 'hello', extra: 1 }]) {
      const r = s.handle(v);
      expect(r.ok, JSON.stringify(v)).toBe(false);
    }
  });

  it('does not treat Object.prototype members as commands', () => {
    const s = newSession();
    for (const cmd of ['constructor', '__proto__', 'toString', 'hasOwnProperty', 'valueOf']) {
      const r = s.handle({ id: 1, cmd });
      expect(r).toMatchObject({ id: 1, ok: false });
      if (!r.ok) expect(r.error).toContain('unknown command');
    }
  });

  it('never throws on values zod itself chokes on (fuzzer finding: a prototype-less "length")', () => {
    const s = newSession();
    const r = s.handle({ id: 9, cmd: 'watch', args: { spec: { length: Object.create(null) as object } } });
    expect(r).toMatchObject({ id: 9, ok: false });
  });

  it('names the bad argument, and keeps the id', () => {
    const s = newSession();
    const r = s.handle({ id: 'a', cmd: 'memory', args: { space: 'physical', address: '0x0', length: 16, width: 0 } });
    expect(r).toMatchObject({ id: 'a', ok: false });
    if (!r.ok) expect(r.error).toMatch(/^memory: args\.width: /);
    const unknownArg = s.handle({ id: 2, cmd: 'cpu', args: { cpu: 0, bogus: true } });
    expect(unknownArg.ok).toBe(false);
  });

  it('refuses a step count that would run the machine synchronously for hours', () => {
    const s = newSession();
    s.debugger.pause();
    const r = s.handle({ cmd: 'step', args: { count: 1e12 } });
    expect(r.ok).toBe(false);
    expect(checkRequest({ cmd: 'step', args: { count: MAX_STEP_COUNT } }).ok).toBe(true);
  });

  it('still runs valid requests', () => {
    const s = newSession();
    const r = s.handle({ id: 3, cmd: 'memory', args: { space: 'physical', address: 4096, length: 4 } });
    expect(r).toMatchObject({ id: 3, ok: true });
  });
});

describe('monitor line framing', () => {
  it('discards an over-long line, reports it once, and reads the next line', () => {
    const lines: string[] = [];
    let overflows = 0;
    const feed = lineReader((l) => lines.push(l), { maxLineBytes: 1024, onOverflow: () => overflows++ });
    const junk = Buffer.alloc(64 * 1024, 0x61);
    // 16 MiB without a newline: memory stays at the cap, and the overflow is reported as soon as it happens.
    for (let i = 0; i < 256; i++) feed(junk);
    expect(overflows).toBe(1);
    feed(Buffer.from('still junk\n{"cmd":"hello"}\n'));
    expect(lines).toEqual(['{"cmd":"hello"}']);
    expect(overflows).toBe(1);
  });

  it('splits lines across chunks at any boundary', () => {
    const text = '{"a":1}\n\n  {"b":2}  \n{"c":3}\n';
    for (let cut = 0; cut <= text.length; cut++) {
      const lines: string[] = [];
      const feed = lineReader((l) => lines.push(l));
      feed(Buffer.from(text.slice(0, cut)));
      feed(Buffer.from(text.slice(cut)));
      expect(lines).toEqual(['{"a":1}', '{"b":2}', '{"c":3}']);
    }
  });
});

describe('monitor socket under hostile input', () => {
  it('survives null, prototype names and a line past the cap; the socket file goes with the server', async () => {
    dir = mkdtempSync(join(tmpdir(), 'fm-hostile-'));
    const s = newSession();
    server = await startMonitorServer(s, join(dir, 'm.sock'));
    const c = await rawClient(server.path);
    c.socket.write('null\n');
    expect(await c.next()).toMatchObject({ ok: false });
    c.socket.write('{"id":2,"cmd":"constructor"}\n');
    expect(await c.next()).toMatchObject({ id: 2, ok: false });
    // A line longer than the cap, sent in pieces: one error, then the connection still works.
    const piece = Buffer.alloc(256 * 1024, 0x20);
    for (let sent = 0; sent <= MAX_LINE_BYTES; sent += piece.length) c.socket.write(piece);
    const overflow = await c.next();
    expect(overflow).toMatchObject({ ok: false });
    expect(String(overflow['error'])).toContain('longer than');
    c.socket.write('\n{"id":3,"cmd":"hello"}\n');
    expect(await c.next()).toMatchObject({ id: 3, ok: true, result: { protocol: 'firmament-monitor' } });
    c.socket.destroy();
    const path = server.path;
    await server.close();
    server = null;
    expect(existsSync(path)).toBe(false);
  });
});

describe('monitor resource limits', () => {
  it('refuses serial input beyond what may wait for the guest, and breakpoints and watches beyond their caps', async () => {
    const { MAX_PENDING_SERIAL_INPUT, MAX_BREAKPOINTS, MAX_WATCHES } = await import('../../machine/debug/session.js');
    const s = newSession();
    const line = 'x'.repeat(64 * 1024);
    let accepted = 0;
    for (let i = 0; i < 2 * (MAX_PENDING_SERIAL_INPUT / line.length); i++) if (s.handle({ cmd: 'serial-input', args: { text: line } }).ok) accepted += line.length;
    // The UART's own receive FIFO (16 bytes) holds a little more than the host queue.
    let more = 0;
    let full = s.handle({ cmd: 'serial-input', args: { text: 'y' } });
    while (full.ok && more < 1000) {
      more++;
      full = s.handle({ cmd: 'serial-input', args: { text: 'y' } });
    }
    expect(accepted + more).toBeLessThanOrEqual(MAX_PENDING_SERIAL_INPUT + 16);
    expect(full.ok).toBe(false);
    if (!full.ok) expect(full.error).toContain('COM1 input queue full');
    for (let i = 0; i < MAX_BREAKPOINTS; i++) expect(s.handle({ cmd: 'break', args: { spec: `post 0x${(i & 0xff).toString(16)}` } }).ok).toBe(true);
    expect(s.handle({ cmd: 'break', args: { spec: 'post 0x33' } }).ok).toBe(false);
    for (let i = 0; i < MAX_WATCHES; i++) expect(s.handle({ cmd: 'watch', args: { spec: `0x${(0x1000 * (i + 1)).toString(16)}+8` } }).ok).toBe(true);
    expect(s.handle({ cmd: 'watch', args: { spec: '0x100000+8' } }).ok).toBe(false);
  });
});
