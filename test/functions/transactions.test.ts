import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFunctionService, type RunningService } from '../../vmm/functions/index.js';
import { built, elfOf, externalService, request, tempStore, type Built } from './helpers.js';

/**
 * Transaction checkpoints across processes: a function parked by one
 * `firmament serve` is resumed by a second one that shares the snapshot store
 * (the callback goes to the second), and the first completes the original
 * invocation. A transaction with no callback expires: 504 to the caller, 410
 * to a late callback.
 */
const REPO = path.resolve(__dirname, '../..');
let b: Built;
let store: string;
let a: RunningService;
let ext: Awaited<ReturnType<typeof externalService>>;
let child: ChildProcess | null = null;

async function startChild(storeDir: string): Promise<string> {
  const c = spawn(process.execPath, [path.join(REPO, 'tools/firmament.mjs'), 'serve', '--port', '0', '--pool', '1', '--store', storeDir], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
  child = c;
  let out = '';
  c.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  return new Promise((resolve, reject) => {
    c.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /listening on (http:\/\/\S+)/.exec(out);
      if (m) resolve(m[1]!);
    });
    c.once('exit', (code) => reject(new Error(`serve exited ${code}: ${out}`)));
  });
}

beforeAll(async () => {
  b = await built();
  store = tempStore();
  ext = await externalService();
  a = await startFunctionService({
    pool: { shapes: [{ name: 'default', memMiB: 8, vcpus: 1, image: b.runtime }], warm: 1, maxVms: 4, idleTimeoutMs: 60_000 },
    storeDir: store, port: 0, limitMs: 100, txTtlMs: 60_000, outcomePollMs: 50,
  });
  a.service.addFunction('external', elfOf(b, 'external'));
}, 180_000);

afterAll(async () => {
  child?.kill('SIGTERM');
  await a?.close();
  await ext?.close();
});

describe('transactions across processes', () => {
  it('a second serve process sharing the store restores the checkpoint; the first answers the original request', async () => {
    const bUrl = await startChild(store);
    const pool = await request(bUrl, 'GET', '/pool');
    // The second process loaded the first one's base from the store instead of booting its own.
    expect((pool.json['shapes'] as { baseKey: string }[])[0]!.baseKey).toBe(a.pool.status().shapes[0]!.baseKey);

    const inv = request(a.url, 'POST', '/functions/external/invoke', `${ext.url}\nhello from A`);
    const out = await ext.next();
    expect(out.body).toBe('hello from A');
    const txid = out.headers['x-transaction-id'] as string;
    const cb = await request(bUrl, 'POST', `/callbacks/${txid}`, 'answered via B', { 'X-Transaction-Id': txid });
    expect(cb.status, cb.text).toBe(200);
    expect(cb.json).toMatchObject({ status: 'ok', response: 'external said: answered via B' });
    expect(String(cb.json['vm'])).toMatch(/^fn-default-/);
    const done = await inv;
    expect(done.status, done.text).toBe(200);
    expect(done.json).toMatchObject({ status: 'ok', response: 'external said: answered via B', transactions: [txid] });
    // Answered once: neither process takes it again.
    expect((await request(a.url, 'POST', `/callbacks/${txid}`, 'x', { 'X-Transaction-Id': txid })).status).toBe(409);
    expect((await request(bUrl, 'POST', `/callbacks/${txid}`, 'x', { 'X-Transaction-Id': txid })).status).toBe(409);
  });

  it('a transaction with no callback expires: the caller gets 504, a late callback 410', async () => {
    const short = await startFunctionService({
      pool: { shapes: [{ name: 'default', memMiB: 8, vcpus: 1, image: b.runtime }], warm: 1, maxVms: 2, idleTimeoutMs: 60_000 },
      storeDir: tempStore(), port: 0, limitMs: 100, txTtlMs: 800, outcomePollMs: 50,
    });
    try {
      short.service.addFunction('external', elfOf(b, 'external'));
      const inv = request(short.url, 'POST', '/functions/external/invoke', `${ext.url}\nlate`);
      const out = await ext.next();
      const txid = out.headers['x-transaction-id'] as string;
      const r = await inv;
      expect(r.status).toBe(504);
      expect(r.json['error']).toMatch(/no callback within 800 ms/);
      const late = await request(short.url, 'POST', `/callbacks/${txid}`, 'too late', { 'X-Transaction-Id': txid });
      expect(late.status).toBe(410);
      expect(late.json['error']).toMatch(/expired/);
    } finally {
      await short.close();
    }
  });
});
