/**
 * The function service's HTTP API (docs/functions.md), on Node's http:
 *   POST /functions?name=N[&shape=S][&limitMs=MS]   upload a function ELF (raw body, or JSON {name, elfBase64, shape?, limitMs?})
 *   GET  /functions                                   the uploaded functions
 *   POST /functions/NAME/invoke                       run it on a warm VM with the request body
 *   POST /callbacks/TXID                              an external service's answer to a parked function
 *   GET  /pool, GET /metrics                          the pool as JSON, Prometheus text
 */
import http from 'node:http';
import { createHash, randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { FN_ELF_MAX, FN_IO_MAX } from './abi.js';
import { checkFunctionElf, FunctionElfError } from './elf-check.js';
import { PoolExhausted, type FunctionPool, type InvocationResult, type ParkedVm } from './pool.js';
import { TransactionError, TransactionStore, type TransactionOutcome } from './transactions.js';
import { ServiceMetrics } from './metrics.js';

const NAME_RE = /^[a-z0-9][a-z0-9_-]{0,62}$/;
const MAX_LIMIT_MS = 60_000;

export interface ServiceOptions {
  /** Default per-invocation time limit of user code (virtual ms). */
  limitMs: number;
  /** Base URL external services call back on (default http://HOST:PORT once listening). */
  publicUrl?: string;
  /** How often a waiting invocation looks for an outcome another process wrote (ms). */
  outcomePollMs?: number;
}

interface StoredFunction {
  name: string;
  elf: Uint8Array;
  sha256: string;
  shape: string;
  limitMs: number;
  uploaded: string;
}

class HttpError extends Error {
  constructor(readonly status: number, message: string, readonly headers: Record<string, string> = {}) {
    super(message);
  }
}

function readBody(req: http.IncomingMessage, max: number): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let n = 0;
    let over = false;
    req.on('data', (c: Buffer) => {
      n += c.length;
      if (n > max) over = true;
      else chunks.push(c);
    });
    req.on('end', () => (over ? reject(new HttpError(413, `request body is larger than ${max} bytes`)) : resolve(new Uint8Array(Buffer.concat(chunks)))));
    req.on('error', reject);
  });
}

export class FunctionService {
  readonly functions = new Map<string, StoredFunction>();
  readonly metrics: ServiceMetrics;
  private server: http.Server | null = null;
  private publicUrl = '';
  /** Transactions whose original request waits in this process. */
  private readonly waiters = new Map<string, (o: TransactionOutcome) => void>();

  constructor(
    readonly pool: FunctionPool,
    readonly tx: TransactionStore,
    readonly options: ServiceOptions,
  ) {
    this.metrics = new ServiceMetrics(pool, () => this.functions.size);
  }

  async listen(port: number, host = '127.0.0.1'): Promise<{ port: number; url: string }> {
    const server = http.createServer((req, res) => void this.handle(req, res, performance.now()));
    // Longer than clients' idle keep-alive sockets usually live, so a reused socket is rarely closed under a request.
    server.keepAliveTimeout = 65_000;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => resolve());
    });
    this.server = server;
    const addr = server.address() as AddressInfo;
    const url = `http://${host.includes(':') ? `[${host}]` : host}:${addr.port}`;
    this.publicUrl = this.options.publicUrl ?? url;
    return { port: addr.port, url };
  }

  async close(): Promise<void> {
    for (const [txid, w] of this.waiters) w({ kind: 'error', httpStatus: 503, error: `the service shut down while transaction ${txid} was open` });
    this.waiters.clear();
    if (this.server) {
      const s = this.server;
      this.server = null;
      s.closeAllConnections();
      await new Promise<void>((r) => s.close(() => r()));
    }
  }

  /** Adds or replaces a function (also used to preload examples). */
  addFunction(name: string, elf: Uint8Array, opts: { shape?: string; limitMs?: number } = {}): StoredFunction {
    if (!NAME_RE.test(name)) throw new HttpError(400, `function name ${JSON.stringify(name)}: expected 1-63 characters [a-z0-9_-], starting with a letter or digit`);
    const shape = opts.shape ?? [...this.pool.shapes.keys()][0]!;
    if (!this.pool.shapes.has(shape)) throw new HttpError(400, `shape ${JSON.stringify(shape)}: this service has ${[...this.pool.shapes.keys()].join(', ')}`);
    const limitMs = opts.limitMs ?? this.options.limitMs;
    if (!Number.isInteger(limitMs) || limitMs < 1 || limitMs > MAX_LIMIT_MS) throw new HttpError(400, `limitMs ${limitMs}: expected whole milliseconds 1..${MAX_LIMIT_MS}`);
    try {
      checkFunctionElf(elf, `function ${name}`);
    } catch (e) {
      if (e instanceof FunctionElfError) throw new HttpError(400, e.message);
      throw e;
    }
    const f: StoredFunction = { name, elf, sha256: createHash('sha256').update(elf).digest('hex'), shape, limitMs, uploaded: new Date().toISOString() };
    this.functions.set(name, f);
    return f;
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse, tArrival: number): Promise<void> {
    try {
      const url = new URL(req.url ?? '/', 'http://service');
      const parts = url.pathname.split('/').filter(Boolean);
      const method = req.method ?? 'GET';
      const route = (allowed: string): void => {
        if (method !== allowed) throw new HttpError(405, `${method} ${url.pathname}: use ${allowed}`, { Allow: allowed });
      };
      if (parts.length === 1 && parts[0] === 'functions') {
        if (method === 'GET') return this.send(res, 200, { functions: [...this.functions.values()].map(({ elf, ...f }) => ({ ...f, bytes: elf.length })) });
        route('POST');
        return await this.upload(req, res, url);
      }
      if (parts.length === 3 && parts[0] === 'functions' && parts[2] === 'invoke') {
        route('POST');
        return await this.invoke(req, res, decodeURIComponent(parts[1]!), tArrival);
      }
      if (parts.length === 2 && parts[0] === 'callbacks') {
        route('POST');
        return await this.callback(req, res, decodeURIComponent(parts[1]!), tArrival);
      }
      if (parts.length === 1 && parts[0] === 'pool') {
        route('GET');
        return this.send(res, 200, { ...this.pool.status(), functions: this.functions.size, openTransactions: this.waiters.size });
      }
      if (parts.length === 1 && parts[0] === 'metrics') {
        route('GET');
        res.writeHead(200, { 'Content-Type': this.metrics.contentType });
        res.end(await this.metrics.text());
        return;
      }
      throw new HttpError(404, `no route ${method} ${url.pathname}`);
    } catch (e) {
      if (e instanceof HttpError) {
        this.metrics.rejected.inc({ reason: String(e.status) });
        return this.send(res, e.status, { error: e.message }, e.headers);
      }
      if (e instanceof PoolExhausted) {
        this.metrics.rejected.inc({ reason: '503' });
        return this.send(res, 503, { error: e.message, retryAfterSeconds: e.retryAfterS }, { 'Retry-After': String(e.retryAfterS) });
      }
      if (e instanceof TransactionError) {
        this.metrics.transactions.inc({ event: 'refused' });
        return this.send(res, e.httpStatus, { error: e.message });
      }
      return this.send(res, 500, { error: e instanceof Error ? e.message : String(e) });
    }
  }

  private send(res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
    if (res.headersSent) return;
    const text = `${JSON.stringify(body)}\n`;
    res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': String(Buffer.byteLength(text)), ...headers });
    res.end(text);
  }

  private async upload(req: http.IncomingMessage, res: http.ServerResponse, url: URL): Promise<void> {
    const raw = await readBody(req, FN_ELF_MAX * 2);
    let name = url.searchParams.get('name') ?? '';
    let elf = raw;
    let shape = url.searchParams.get('shape') ?? undefined;
    let limitText = url.searchParams.get('limitMs') ?? undefined;
    if ((req.headers['content-type'] ?? '').startsWith('application/json')) {
      let doc: unknown;
      try {
        doc = JSON.parse(Buffer.from(raw).toString('utf8'));
      } catch (e) {
        throw new HttpError(400, `body: not JSON: ${e instanceof Error ? e.message : String(e)}`);
      }
      if (doc === null || typeof doc !== 'object') throw new HttpError(400, 'body: expected an object {name, elfBase64, shape?, limitMs?}');
      const d = doc as Record<string, unknown>;
      if (typeof d['name'] !== 'string') throw new HttpError(400, 'body.name: expected a string');
      if (typeof d['elfBase64'] !== 'string') throw new HttpError(400, 'body.elfBase64: expected a base64 string');
      name = d['name'];
      elf = new Uint8Array(Buffer.from(d['elfBase64'], 'base64'));
      if (d['shape'] !== undefined) shape = String(d['shape']);
      if (d['limitMs'] !== undefined) limitText = String(d['limitMs']);
    }
    if (elf.length > FN_ELF_MAX) throw new HttpError(413, `function ELF is ${elf.length} bytes, the runtime takes at most ${FN_ELF_MAX}`);
    const limitMs = limitText === undefined ? undefined : Number(limitText);
    const f = this.addFunction(name, elf, { ...(shape !== undefined ? { shape } : {}), ...(limitMs !== undefined ? { limitMs } : {}) });
    this.send(res, 201, { name: f.name, sha256: f.sha256, bytes: f.elf.length, shape: f.shape, limitMs: f.limitMs });
  }

  private resultDoc(fn: string, r: InvocationResult): { status: number; doc: Record<string, unknown> } {
    const doc: Record<string, unknown> = {
      function: fn,
      status: r.status,
      ...(r.detail ? { detail: r.detail } : {}),
      response: Buffer.from(r.response).toString('utf8'),
      responseBase64: Buffer.from(r.response).toString('base64'),
      timings: r.timings,
      vm: r.vm,
      shape: r.shape,
    };
    const status = r.status === 'ok' ? 200 : r.status === 'timeout' ? 504 : 500;
    this.metrics.invocations.inc({ function: fn, status: r.status });
    this.metrics.total.observe({ status: r.status }, r.timings.totalMs / 1000);
    if (r.status !== 'crashed') {
      this.metrics.firstUser.observe({ shape: r.shape }, r.timings.firstUserInstructionMs / 1000);
      const t = r.timings;
      this.metrics.phases.observe({ phase: 'queue' }, t.queueMs / 1000);
      this.metrics.phases.observe({ phase: 'assign' }, t.assignMs / 1000);
      this.metrics.phases.observe({ phase: 'start' }, t.startMs / 1000);
      this.metrics.phases.observe({ phase: 'run' }, t.runMs / 1000);
    }
    return { status, doc };
  }

  private async invoke(req: http.IncomingMessage, res: http.ServerResponse, name: string, tArrival: number): Promise<void> {
    const f = this.functions.get(name);
    if (!f) {
      req.resume();
      throw new HttpError(404, `no function ${JSON.stringify(name)} (upload it with POST /functions?name=${encodeURIComponent(name)})`);
    }
    const body = await readBody(req, FN_IO_MAX);
    const out = await this.pool.invoke(f.shape, { name: f.name, elf: f.elf, limitMs: f.limitMs }, body, tArrival);
    if ('status' in out) {
      const { status, doc } = this.resultDoc(name, out);
      this.send(res, status, doc);
      this.metrics.phases.observe({ phase: 'reply' }, Math.max(0, performance.now() - tArrival - out.timings.totalMs) / 1000);
      return;
    }
    // Parked on an external call: wait for the transaction chain to end (here or in another process).
    const transactions: string[] = [];
    let txid = await this.parkAndCall(out);
    for (;;) {
      transactions.push(txid);
      const oc = await this.waitOutcome(txid);
      if (oc.kind === 'parked') {
        txid = oc.next;
        continue;
      }
      const parkedMs = Math.round((performance.now() - tArrival) * 1000) / 1000;
      if (oc.kind === 'error') return this.send(res, oc.httpStatus, { function: name, error: oc.error, transactions, totalMs: parkedMs });
      return this.send(res, oc.httpStatus, { ...oc.result, transactions, totalMs: parkedMs });
    }
  }

  /** Stores the parked VM under a new transaction id, then calls the external service. */
  private async parkAndCall(parked: ParkedVm): Promise<string> {
    const txid = randomUUID();
    const { expiresAt } = await this.tx.park(txid, parked);
    this.metrics.transactions.inc({ event: 'parked' });
    const callback = `${this.publicUrl}/callbacks/${txid}`;
    void (async () => {
      let ok = false;
      let why = '';
      try {
        const r = await fetch(parked.request.url, {
          method: 'POST',
          headers: { 'X-Transaction-Id': txid, 'X-Callback-Url': callback, 'X-Transaction-Expires': expiresAt, 'Content-Type': 'application/octet-stream' },
          body: new Uint8Array(parked.request.body) as Uint8Array<ArrayBuffer>,
          signal: AbortSignal.timeout(10_000),
        });
        await r.arrayBuffer().catch(() => undefined);
        ok = r.status < 400;
        why = `answered ${r.status}`;
      } catch (e) {
        why = e instanceof Error ? e.message : String(e);
      }
      if (ok) return;
      // The request never reached the service: the function goes on at once, and the call returns "not reached".
      this.metrics.transactions.inc({ event: 'external-failed' });
      await this.answer(txid, { status: 0, body: new Uint8Array(0) }, performance.now()).catch((e: unknown) => {
        console.error(`serve: transaction ${txid}: the external call to ${parked.request.url} failed (${why}), and resuming the function failed: ${e instanceof Error ? e.message : String(e)}`);
      });
    })();
    return txid;
  }

  /** Resolves when the transaction ends: answered here, or an outcome file written by another process, or expiry. */
  private waitOutcome(txid: string): Promise<TransactionOutcome> {
    return new Promise((resolve) => {
      let done = false;
      const finish = (o: TransactionOutcome): void => {
        if (done) return;
        done = true;
        clearInterval(poll);
        clearTimeout(expiry);
        this.waiters.delete(txid);
        resolve(o);
      };
      this.waiters.set(txid, finish);
      const poll = setInterval(() => {
        void this.tx.outcome(txid).then((o) => o && finish(o));
      }, this.options.outcomePollMs ?? 200);
      const expiry = setTimeout(() => {
        void this.tx.expire(txid).then((expired) => {
          if (expired) {
            this.metrics.transactions.inc({ event: 'expired' });
            finish({ kind: 'error', httpStatus: 504, error: `transaction ${txid}: no callback within ${this.tx.ttlMs} ms` });
          }
        });
      }, this.tx.ttlMs);
    });
  }

  /** Claims the transaction, resumes the parked VM with the answer, records the outcome. */
  private async answer(txid: string, answer: { status: number; body: Uint8Array }, tArrival: number): Promise<{ httpStatus: number; doc: Record<string, unknown> }> {
    const parked = await this.tx.claim(txid);
    let out: InvocationResult | ParkedVm;
    try {
      out = await this.pool.resume(parked, answer, tArrival);
    } catch (e) {
      // Nothing ran: give the claim back so the callback can be retried (503) or report a checkpoint this service cannot run.
      await this.tx.unclaim(txid);
      if (e instanceof PoolExhausted) throw e;
      throw new HttpError(409, e instanceof Error ? e.message : String(e));
    }
    this.metrics.transactions.inc({ event: 'resumed' });
    let outcome: TransactionOutcome;
    let reply: { httpStatus: number; doc: Record<string, unknown> };
    if ('status' in out) {
      const { status, doc } = this.resultDoc(parked.function, out);
      outcome = { kind: 'result', httpStatus: status, result: doc };
      reply = { httpStatus: status, doc };
    } else {
      const next = await this.parkAndCall(out);
      outcome = { kind: 'parked', next };
      reply = { httpStatus: 202, doc: { function: parked.function, status: 'parked', transactionId: next } };
    }
    await this.tx.finish(txid, outcome);
    this.waiters.get(txid)?.(outcome);
    return reply;
  }

  private async callback(req: http.IncomingMessage, res: http.ServerResponse, txid: string, tArrival: number): Promise<void> {
    const header = req.headers['x-transaction-id'];
    if (typeof header !== 'string') {
      req.resume();
      throw new HttpError(400, `the X-Transaction-Id header is missing (it must repeat ${txid})`);
    }
    if (header !== txid) {
      req.resume();
      throw new HttpError(400, `X-Transaction-Id ${JSON.stringify(header)} does not match the URL's ${JSON.stringify(txid)}`);
    }
    const body = await readBody(req, FN_IO_MAX);
    const statusText = req.headers['x-status'];
    const status = statusText === undefined ? 200 : Number(statusText);
    if (!Number.isInteger(status) || status < 100 || status > 599) throw new HttpError(400, `X-Status ${JSON.stringify(statusText)}: expected an HTTP status 100..599`);
    const { httpStatus, doc } = await this.answer(txid, { status, body }, tArrival);
    this.send(res, httpStatus, { ...doc, transactionId: txid });
  }
}
