import { readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { mkdtempSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { FunctionPool, PoolExhausted, type InvocationResult } from '../../vmm/functions/pool.js';
import { buildFunctions } from '../../tools/build-functions.mjs';
import { built, elfOf, type Built } from './helpers.js';

/** The pool without HTTP: warm clones, refill, shrink after idle, capacity, reproducible function builds. */
let b: Built;
let pool: FunctionPool;

beforeAll(async () => {
  b = await built();
  pool = await FunctionPool.start({ shapes: [{ name: 's', memMiB: 8, vcpus: 1, image: b.runtime }], warm: 2, maxVms: 5, idleTimeoutMs: 1000 });
}, 180_000);

afterAll(async () => {
  await pool?.close();
});

const until = async (cond: () => boolean): Promise<void> => {
  while (!cond()) await new Promise((r) => setTimeout(r, 5));
};

describe('function pool', () => {
  it('keeps N warm clones, grows under load up to maxVms, refuses beyond, refills, and shrinks back after the idle timeout', async () => {
    await until(() => pool.status().shapes[0]!.warm === 2);
    const code = { name: 'spin', elf: elfOf(b, 'spin'), limitMs: 100 };
    const running = Array.from({ length: 5 }, () => pool.invoke('s', code, new Uint8Array(0), performance.now()));
    expect(pool.status().vms).toBe(5);
    expect(() => pool.invoke('s', code, new Uint8Array(0), performance.now())).toThrow(PoolExhausted);
    const results = (await Promise.all(running)) as InvocationResult[];
    expect(results.map((r) => r.status)).toEqual(['timeout', 'timeout', 'timeout', 'timeout', 'timeout']);
    expect(pool.status().shapes[0]!.warm).toBe(5);
    // Nothing is removed before the idle timeout, then the pool shrinks back to its target.
    expect(pool.shrink(performance.now())).toBe(0);
    expect(pool.shrink(performance.now() + 1001)).toBe(3);
    expect(pool.status().shapes[0]!.warm).toBe(2);
    // Host frames of removed clones went back: 2 warm clones' private ranges, not 5.
    const echo = (await pool.invoke('s', { name: 'echo', elf: elfOf(b, 'echo'), limitMs: 100 }, new TextEncoder().encode('x'), performance.now())) as InvocationResult;
    expect(Buffer.from(echo.response).toString()).toBe('x');
  });

  it('an ELF the runtime refuses (the runtime checks it again: ET_DYN) is a bad-elf answer, and the VM goes on', async () => {
    const elf = elfOf(b, 'echo').slice();
    new DataView(elf.buffer).setUint16(16, 3, true); // e_type ET_DYN: the runtime refuses to load it
    const r = (await pool.invoke('s', { name: 'bad', elf, limitMs: 100 }, new Uint8Array(0), performance.now())) as InvocationResult;
    expect(r.status).toBe('bad-elf');
    const again = (await pool.invoke('s', { name: 'echo', elf: elfOf(b, 'echo'), limitMs: 100 }, new TextEncoder().encode('ok'), performance.now())) as InvocationResult;
    expect(Buffer.from(again.response).toString()).toBe('ok');
  });
});

describe('growing the pool', () => {
  it('new clones leave the engines\' translated code alone (no flush of all code per clone)', async () => {
    await until(() => pool.status().shapes[0]!.warm >= 2);
    const spies = pool.machine.hostCpus.map((h) => vi.spyOn(h.engine, 'flushCode'));
    try {
      const code = { name: 'echo', elf: elfOf(b, 'echo'), limitMs: 100 };
      // Four at once with two warm: two clones are made on the spot, and the pool refills behind them.
      const rs = (await Promise.all([0, 1, 2, 3].map((i) => pool.invoke('s', code, new TextEncoder().encode(`grow ${i}`), performance.now())))) as InvocationResult[];
      expect(rs.map((r) => Buffer.from(r.response).toString())).toEqual(['grow 0', 'grow 1', 'grow 2', 'grow 3']);
      expect(new Set(rs.map((r) => r.vm)).size).toBe(4);
      for (const s of spies) expect(s).not.toHaveBeenCalled();
    } finally {
      for (const s of spies) s.mockRestore();
    }
  });
});

describe('an idle pool', () => {
  it('keeps no timer: fresh clones and VMs waiting after an invocation leave the machine nothing to wake for', async () => {
    await until(() => pool.status().shapes[0]!.warm >= 2);
    const r = (await pool.invoke('s', { name: 'echo', elf: elfOf(b, 'echo'), limitMs: 100 }, new TextEncoder().encode('idle'), performance.now())) as InvocationResult;
    expect(r.status).toBe('ok');
    const shape = pool.shapes.get('s')!;
    expect(shape.warm.some((v) => v.runs === 0)).toBe(true); // a clone that never ran is among them
    await until(() => shape.busy.size === 0 && shape.warm.every((v) => !v.started || v.vm.frozen));
    expect(pool.machine.timeline.nextDeadline()).toBe(Infinity);
  });
});

describe('a runtime that dies', () => {
  it('its invocation is answered "crashed" with the VM\'s exit, the VM leaves the pool, and the pool refills', async () => {
    const inv = pool.invoke('s', { name: 'spin', elf: elfOf(b, 'spin'), limitMs: 10_000 }, new Uint8Array(0), performance.now());
    const shape = pool.shapes.get('s')!;
    const busy = [...shape.busy][0]!;
    // What a kernel panic, a triple fault or the host watchdog does to the VM.
    busy.vm.stop({ reason: 'triple-fault', code: 0, detail: 'vCPU 0: simulated' });
    const r = (await inv) as InvocationResult;
    expect(r.status).toBe('crashed');
    expect(r.detail).toMatch(/the runtime VM stopped: triple-fault code 0: vCPU 0: simulated/);
    expect(shape.busy.size).toBe(0);
    await until(() => pool.status().shapes[0]!.warm >= 2);
    expect(pool.counters.vmCrashes).toBe(1);
  });
});

describe('example functions', () => {
  it('build reproducibly (two forced builds into different directories are byte-identical)', async () => {
    const d1 = mkdtempSync(path.join(os.tmpdir(), 'fm-fn-a-'));
    const d2 = mkdtempSync(path.join(os.tmpdir(), 'fm-fn-b-'));
    const x = await buildFunctions({ force: true, outDir: d1 });
    const y = await buildFunctions({ force: true, outDir: d2 });
    expect(Object.keys(x)).toEqual(['crash', 'echo', 'external', 'leftovers', 'sha256', 'spin', 'wild']);
    for (const n of Object.keys(x)) expect(Buffer.compare(readFileSync(x[n]!), readFileSync(y[n]!))).toBe(0);
  });
});
