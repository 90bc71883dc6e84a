/**
 * `npm run bench` rows for the function service (docs/functions.md): request
 * to first user instruction and to response, p50/p99, on a warm pool and with
 * a boot per request; throughput with 16 concurrent clients; transaction
 * checkpoint park and resume. Everything on loopback; request loops are
 * bounded in count.
 */
import http from 'node:http';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { startFunctionService } from '../vmm/functions/index.js';
import { FunctionPool, type InvocationResult } from '../vmm/functions/pool.js';
import { quantile, type BenchRow } from './row.js';

const f = (x: number): string => `${x.toFixed(x < 1 ? 3 : x < 10 ? 2 : 1)} ms`;
const row = (metric: string, firmament: string, note: string): BenchRow => ({ metric, firmament, qemu: 'n/a', ratio: 'n/a', note });

const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });

function post(url: string, body: string, headers: Record<string, string> = {}): Promise<{ status: number; json: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: 'POST', agent, headers: { 'Content-Length': String(Buffer.byteLength(body)), ...headers } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, json: JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown> }));
    });
    req.on('error', (e: NodeJS.ErrnoException) => (e.code === 'ECONNRESET' ? resolve({ status: 0, json: { error: e.message } }) : reject(e)));
    req.end(body);
  });
}

export async function functionBenchRows(runtime: string, functions: Record<string, string>): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  const store = mkdtempSync(join(tmpdir(), 'fm-fn-bench-'));
  const echo = new Uint8Array(readFileSync(functions['echo']!));
  try {
    // 1. Warm pool, sequential requests.
    const svc = await startFunctionService({
      pool: { shapes: [{ name: 'default', memMiB: 8, vcpus: 1, image: runtime }], warm: 16, maxVms: 40, idleTimeoutMs: 600_000 },
      storeDir: store, port: 0, limitMs: 100, txTtlMs: 60_000, outcomePollMs: 20,
    });
    try {
      svc.service.addFunction('echo', echo);
      svc.service.addFunction('external', new Uint8Array(readFileSync(functions['external']!)));
      while (svc.pool.status().shapes[0]!.warm < 16) await new Promise((r) => setTimeout(r, 10));
      const N = 300;
      const first: number[] = [];
      const total: number[] = [];
      const client: number[] = [];
      const spans: Record<'queueMs' | 'assignMs' | 'startMs' | 'runMs', number[]> = { queueMs: [], assignMs: [], startMs: [], runMs: [] };
      let resets = 0;
      for (let i = 0; i < N; i++) {
        const t0 = performance.now();
        const r = await post(`${svc.url}/functions/echo/invoke`, `request ${i}`);
        if (r.status === 0) {
          resets++;
          continue;
        }
        client.push(performance.now() - t0);
        if (r.status !== 200) throw new Error(`bench: echo answered ${r.status}: ${JSON.stringify(r.json)}`);
        const t = r.json['timings'] as Record<string, number>;
        if (i >= 20) {
          first.push(t['firstUserInstructionMs']!);
          total.push(t['totalMs']!);
          for (const k of Object.keys(spans) as (keyof typeof spans)[]) spans[k].push(t[k]!);
        }
      }
      const p50 = (a: number[]): string => `${(quantile(a, 0.5) * 1000).toFixed(0)} us`;
      rows.push(row('fn warm pool: request -> first user instruction', `p50 ${f(quantile(first, 0.5))}, p99 ${f(quantile(first, 0.99))}`, `echo, ${first.length} sequential requests after 20 warm-up, 16 warm clones (VMs reused); goal p50 <= 1 ms; server-side, from request arrival`));
      rows.push(row('fn warm pool: request -> response', `p50 ${f(quantile(total, 0.5))}, p99 ${f(quantile(total, 0.99))}`, `server-side; client round trip p50 ${f(quantile(client, 0.5))}${resets ? `; ${resets} connection resets` : ''}`));
      rows.push(row('fn warm path spans (HTTP, p50)', `queue ${p50(spans.queueMs)}, assign ${p50(spans.assignMs)}, start ${p50(spans.startMs)}, run ${p50(spans.runMs)}`, 'queue: arrival to the pool (body read); assign: VM chosen, invocation written; start: to the first user instruction (event-loop hop, slice, the runtime loading the ELF); run: user code to its answer'));

      // The same path without HTTP: FunctionPool.invoke on the same warm pool.
      const inFirst: number[] = [];
      const inTotal: number[] = [];
      const body = new TextEncoder().encode('in-process');
      for (let i = 0; i < N; i++) {
        const t0 = performance.now();
        const r = (await svc.pool.invoke('default', { name: 'echo', elf: echo, limitMs: 100 }, body, t0)) as InvocationResult;
        if (r.status !== 'ok') throw new Error(`bench: in-process echo answered ${r.status}`);
        if (i >= 20) {
          inFirst.push(r.timings.firstUserInstructionMs);
          inTotal.push(performance.now() - t0);
        }
      }
      rows.push(row('fn warm pool in-process: invoke -> first user instruction', `p50 ${f(quantile(inFirst, 0.5))}, p99 ${f(quantile(inFirst, 0.99))}`, `FunctionPool.invoke, ${inFirst.length} sequential invocations after 20 warm-up; invoke -> result p50 ${f(quantile(inTotal, 0.5))}`));

      // 3. Throughput: 16 clients, 25 requests each.
      const CLIENTS = 16;
      const EACH = 25;
      const t0 = performance.now();
      let ok = 0;
      let busy = 0;
      await Promise.all(Array.from({ length: CLIENTS }, async (_, c) => {
        for (let i = 0; i < EACH; i++) {
          const r = await post(`${svc.url}/functions/echo/invoke`, `c${c} r${i}`);
          if (r.status === 200) ok++;
          else if (r.status === 503) busy++;
        }
      }));
      const secs = (performance.now() - t0) / 1000;
      rows.push(row('fn throughput, 16 concurrent clients', `${(ok / secs).toFixed(0)} req/s`, `${ok}/${CLIENTS * EACH} answered 200 (${busy} 503) in ${secs.toFixed(2)} s, echo, one machine (1 host CPU engine)`));

      // 4. Checkpoint park and resume, with a loopback service that calls back at once.
      const parks: number[] = [];
      const resumes: number[] = [];
      let sentAt = 0;
      const ext = http.createServer((req, res) => {
        req.resume();
        req.on('end', () => {
          parks.push(performance.now() - sentAt);
          res.writeHead(202).end();
          const txid = String(req.headers['x-transaction-id']);
          const t = performance.now();
          void post(String(req.headers['x-callback-url']), 'pong', { 'X-Transaction-Id': txid }).then(() => resumes.push(performance.now() - t));
        });
      });
      await new Promise<void>((r) => ext.listen(0, '127.0.0.1', () => r()));
      const extUrl = `http://127.0.0.1:${(ext.address() as AddressInfo).port}/`;
      try {
        for (let i = 0; i < 12; i++) {
          sentAt = performance.now();
          const r = await post(`${svc.url}/functions/external/invoke`, `${extUrl}\nping`);
          if (r.json['response'] !== 'external said: pong') throw new Error(`bench: external answered ${JSON.stringify(r.json)}`);
        }
      } finally {
        ext.close();
      }
      rows.push(row('fn checkpoint park', `p50 ${f(quantile(parks.slice(2), 0.5))}`, 'invoke -> external request out: run to the EXTERNAL hypercall, save state + private pages into the store (fsync), POST out; median of 10'));
      rows.push(row('fn checkpoint resume', `p50 ${f(quantile(resumes.slice(2), 0.5))}`, 'callback -> its answer: claim, load from the store, restore into a clone, run to the response, record the outcome; median of 10'));
    } finally {
      await svc.close();
    }

    // 2. No pool: boot the runtime for every request (machine, boot to READY, clone, run).
    const bootFirst: number[] = [];
    const bootTotal: number[] = [];
    for (let i = 0; i < 5; i++) {
      const t0 = performance.now();
      const pool = await FunctionPool.start({ shapes: [{ name: 'cold', memMiB: 8, vcpus: 1, image: runtime }], warm: 0, maxVms: 1, idleTimeoutMs: 60_000 });
      try {
        const r = (await pool.invoke('cold', { name: 'echo', elf: echo, limitMs: 100 }, new TextEncoder().encode('cold'), t0)) as InvocationResult;
        bootFirst.push(r.timings.firstUserInstructionMs);
        bootTotal.push(r.timings.totalMs);
      } finally {
        await pool.close();
      }
    }
    rows.push(row('fn boot per request: request -> first user instruction', `p50 ${f(quantile(bootFirst, 0.5))}, max ${f(Math.max(...bootFirst))}`, '5 requests, each: new machine, boot the runtime to READY, snapshot, one clone, run echo'));
    rows.push(row('fn boot per request: request -> response', `p50 ${f(quantile(bootTotal, 0.5))}, max ${f(Math.max(...bootTotal))}`, 'same runs'));
  } finally {
    rmSync(store, { recursive: true, force: true });
    agent.destroy();
  }
  return rows;
}

// Standalone: npx tsx bench/functions.ts
if (process.argv[1]?.endsWith('functions.ts')) {
  const { buildImages } = await import('../tools/build-images.mjs');
  const images = await buildImages({ quiet: true });
  for (const r of await functionBenchRows(images.guests['function-runtime']!, images.functions)) console.log(`${r.metric}: ${r.firmament}  (${r.note})`);
}
