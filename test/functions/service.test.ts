import { createHash, randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFunctionService, type RunningService } from '../../vmm/functions/index.js';
import { built, elfOf, externalService, request, tempStore, type Built } from './helpers.js';

/**
 * The function service end to end over HTTP: uploads, invocations on warm
 * linked clones, the failures a function can have (each an error response,
 * after which the same VM serves the next request), 503 when no VM is free,
 * the pool and metrics endpoints, and transaction checkpoints.
 */
let b: Built;
let svc: RunningService;
let ext: Awaited<ReturnType<typeof externalService>>;
let base: string;

beforeAll(async () => {
  b = await built();
  ext = await externalService();
  svc = await startFunctionService({
    pool: { shapes: [{ name: 'small', memMiB: 8, vcpus: 1, image: b.runtime }], warm: 1, maxVms: 2, idleTimeoutMs: 60_000, pcpus: 1 },
    storeDir: tempStore(), port: 0, limitMs: 100, txTtlMs: 20_000, outcomePollMs: 50,
  });
  base = svc.url;
  for (const f of ['echo', 'sha256', 'crash', 'spin', 'wild', 'external']) {
    const r = await request(base, 'POST', `/functions?name=${f}`, elfOf(b, f), { 'Content-Type': 'application/octet-stream' });
    expect(r.status, r.text).toBe(201);
  }
}, 180_000);

afterAll(async () => {
  await svc?.close();
  await ext?.close();
});

describe('POST /functions', () => {
  it('stores an ELF (raw or JSON with base64) and lists it', async () => {
    const elf = elfOf(b, 'echo');
    const r = await request(base, 'POST', '/functions', JSON.stringify({ name: 'echo2', elfBase64: Buffer.from(elf).toString('base64'), limitMs: 50 }), { 'Content-Type': 'application/json' });
    expect(r.status, r.text).toBe(201);
    expect(r.json).toMatchObject({ name: 'echo2', bytes: elf.length, shape: 'small', limitMs: 50, sha256: createHash('sha256').update(elf).digest('hex') });
    const list = await request(base, 'GET', '/functions');
    const names = (list.json['functions'] as { name: string }[]).map((f) => f.name);
    expect(names).toEqual(expect.arrayContaining(['echo', 'echo2', 'sha256', 'external']));
  });

  it('refuses bad uploads with 400/413 naming the field', async () => {
    const echo = elfOf(b, 'echo');
    const notElf = await request(base, 'POST', '/functions?name=x', 'hello');
    expect(notElf.status).toBe(400);
    expect(notElf.json['error']).toMatch(/header|e_ident/);
    const outside = echo.slice();
    // First program header's p_vaddr (phoff 64 + 16): move the text outside the function window.
    new DataView(outside.buffer).setBigUint64(64 + 16, 0x100000n, true);
    const moved = await request(base, 'POST', '/functions?name=x', outside);
    expect(moved.status).toBe(400);
    expect(moved.json['error']).toMatch(/p_vaddr \(offset 80\).*outside the function window/);
    expect((await request(base, 'POST', '/functions?name=Bad!', echo)).status).toBe(400);
    expect((await request(base, 'POST', '/functions?name=x&shape=huge', echo)).json['error']).toMatch(/shape "huge"/);
    expect((await request(base, 'POST', '/functions?name=x&limitMs=0', echo)).status).toBe(400);
    expect((await request(base, 'POST', '/functions', '{"name": 3}', { 'Content-Type': 'application/json' })).json['error']).toMatch(/body.name/);
    expect((await request(base, 'POST', '/functions?name=x', new Uint8Array(2 * 1024 * 1024))).status).toBe(413);
  });
});

describe('POST /functions/NAME/invoke', () => {
  it('echo and sha256 answer with the response and the four timings', async () => {
    const e = await request(base, 'POST', '/functions/echo/invoke', 'hello function');
    expect(e.status, e.text).toBe(200);
    expect(e.json).toMatchObject({ function: 'echo', status: 'ok', response: 'hello function', shape: 'small' });
    const t = e.json['timings'] as Record<string, number>;
    for (const k of ['queueMs', 'assignMs', 'firstUserInstructionMs', 'runMs', 'totalMs']) expect(t[k]).toBeGreaterThanOrEqual(0);
    expect(t['firstUserInstructionMs']).toBeLessThanOrEqual(t['totalMs']!);
    const body = Buffer.from(Array.from({ length: 1000 }, (_, i) => i & 0xff));
    const s = await request(base, 'POST', '/functions/sha256/invoke', body);
    expect(s.json['response']).toBe(createHash('sha256').update(body).digest('hex'));
  });

  it('a fault, an endless loop and a wild write become error responses, and the same VM serves the next request', async () => {
    const crash = await request(base, 'POST', '/functions/crash/invoke', '');
    expect(crash.status).toBe(500);
    expect(crash.json).toMatchObject({ status: 'fault' });
    expect(crash.json['detail']).toMatch(/#PF at rip=0x4[0-9a-f]+ accessing 0x0/);
    const next = await request(base, 'POST', '/functions/echo/invoke', 'after crash');
    expect(next.json['response']).toBe('after crash');

    const spin = await request(base, 'POST', '/functions/spin/invoke', '');
    expect(spin.status).toBe(504);
    expect(spin.json).toMatchObject({ status: 'timeout', detail: 'still running after the limit of 100 ms' });
    const wild = await request(base, 'POST', '/functions/wild/invoke', '');
    expect(wild.status).toBe(500);
    expect(wild.json['detail']).toMatch(/#PF .*accessing 0xffffffff80218000/);
    // Every failure was served by a VM that stayed in the pool: with room for 2 VMs, the next echo runs on one of those.
    const after = await request(base, 'POST', '/functions/echo/invoke', 'still serving');
    expect(after.json['response']).toBe('still serving');
    expect([crash.json['vm'], spin.json['vm'], wild.json['vm']]).toContain(after.json['vm']);
    const pool = await request(base, 'GET', '/pool');
    expect(pool.json['vms']).toBeLessThanOrEqual(2);
  });

  it('unknown function 404, body over 64 KiB 413, wrong method 405, unknown route 404', async () => {
    expect((await request(base, 'POST', '/functions/nope/invoke', 'x')).status).toBe(404);
    expect((await request(base, 'POST', '/functions/echo/invoke', new Uint8Array(65 * 1024))).status).toBe(413);
    const m = await request(base, 'GET', '/functions/echo/invoke');
    expect(m.status).toBe(405);
    expect(m.headers['allow']).toBe('POST');
    expect((await request(base, 'GET', '/nothing')).status).toBe(404);
  });

  it('503 with Retry-After when every VM is busy and no more fit', async () => {
    expect((await request(base, 'POST', '/functions?name=spin-long&limitMs=500', elfOf(b, 'spin'))).status).toBe(201);
    const busy = [request(base, 'POST', '/functions/spin-long/invoke', ''), request(base, 'POST', '/functions/spin-long/invoke', '')];
    // Both VMs (maxVms 2) are running a 500 ms loop; a third request finds none.
    while (((await request(base, 'GET', '/pool')).json['shapes'] as { busy: number }[])[0]!.busy < 2) await new Promise((r) => setTimeout(r, 10));
    const third = await request(base, 'POST', '/functions/echo/invoke', 'x');
    expect(third.status).toBe(503);
    expect(third.headers['retry-after']).toBe('1');
    expect(third.json['error']).toMatch(/no VM of shape 'small' is free/);
    const done = await Promise.all(busy);
    expect(done.map((r) => r.status)).toEqual([504, 504]);
  });
});

describe('GET /pool and /metrics', () => {
  it('report the pool and count invocations in Prometheus text', async () => {
    const p = await request(base, 'GET', '/pool');
    expect(p.status).toBe(200);
    const shapes = p.json['shapes'] as { name: string; warm: number; busy: number; target: number }[];
    expect(shapes[0]).toMatchObject({ name: 'small', target: 1 });
    expect(p.json['maxVms']).toBe(2);
    const m = await request(base, 'GET', '/metrics');
    expect(m.headers['content-type']).toMatch(/^text\/plain/);
    expect(m.text).toMatch(/^firmament_fn_invocations_total\{function="echo",status="ok"\} [1-9]/m);
    expect(m.text).toMatch(/^firmament_fn_invocations_total\{function="spin",status="timeout"\} [1-9]/m);
    expect(m.text).toMatch(/^firmament_fn_rejected_total\{reason="503"\} [1-9]/m);
    expect(m.text).toMatch(/^firmament_fn_pool_vms\{shape="small",state="warm"\} \d+/m);
    expect(m.text).toMatch(/^firmament_fn_first_user_instruction_seconds_count\{shape="small"\} [1-9]/m);
    // Every span of an invocation is a histogram (reply: only invocations answered directly, not resumed ones).
    const count = (phase: string): number => Number(new RegExp(`^firmament_fn_phase_seconds_count\\{phase="${phase}"\\} (\\d+)`, 'm').exec(m.text)?.[1] ?? -1);
    for (const phase of ['queue', 'assign', 'start', 'run', 'reply']) expect(count(phase)).toBeGreaterThan(0);
    expect(count('reply')).toBeLessThanOrEqual(count('queue'));
  });
});

describe('transaction checkpoints', () => {
  it('an external call parks the VM under a transaction id; the callback resumes it and the original invocation completes; a replay gets 409', async () => {
    const inv = request(base, 'POST', '/functions/external/invoke', `${ext.url}\nping`);
    const out = await ext.next();
    expect(out.body).toBe('ping');
    const txid = out.headers['x-transaction-id'] as string;
    expect(txid).toMatch(/^[0-9a-f-]{36}$/);
    expect(out.headers['x-callback-url']).toBe(`${base}/callbacks/${txid}`);
    // Parked: its VM is freed, only the checkpoint holds it.
    const cb = await request(base, 'POST', `/callbacks/${txid}`, 'pong', { 'X-Transaction-Id': txid });
    expect(cb.status, cb.text).toBe(200);
    expect(cb.json).toMatchObject({ status: 'ok', response: 'external said: pong', transactionId: txid });
    const done = await inv;
    expect(done.status).toBe(200);
    expect(done.json).toMatchObject({ function: 'external', status: 'ok', response: 'external said: pong', transactions: [txid] });
    const replay = await request(base, 'POST', `/callbacks/${txid}`, 'again', { 'X-Transaction-Id': txid });
    expect(replay.status).toBe(409);
    expect(replay.json['error']).toMatch(/already answered/);
  });

  it('unknown ids 404, malformed ids and missing or mismatched headers 400', async () => {
    const id = randomUUID();
    expect((await request(base, 'POST', `/callbacks/${id}`, 'x', { 'X-Transaction-Id': id })).status).toBe(404);
    expect((await request(base, 'POST', '/callbacks/not-a-uuid', 'x', { 'X-Transaction-Id': 'not-a-uuid' })).status).toBe(400);
    expect((await request(base, 'POST', `/callbacks/${id}`, 'x')).json['error']).toMatch(/X-Transaction-Id header is missing/);
    expect((await request(base, 'POST', `/callbacks/${id}`, 'x', { 'X-Transaction-Id': randomUUID() })).json['error']).toMatch(/does not match/);
  });

  it('a non-2xx answer reaches the function as an error; an unreachable service resumes it at once', async () => {
    const inv = request(base, 'POST', '/functions/external/invoke', `${ext.url}\nx`);
    const out = await ext.next();
    const txid = out.headers['x-transaction-id'] as string;
    const cb = await request(base, 'POST', `/callbacks/${txid}`, 'nope', { 'X-Transaction-Id': txid, 'X-Status': '500' });
    expect(cb.json).toMatchObject({ status: 'function-error' });
    expect((await inv).json['detail']).toMatch(/returned -1/);
    const dead = await request(base, 'POST', '/functions/external/invoke', 'http://127.0.0.1:9/closed\nx');
    expect(dead.json).toMatchObject({ status: 'function-error' });
    expect((dead.json['transactions'] as string[]).length).toBe(1);
  });
});
