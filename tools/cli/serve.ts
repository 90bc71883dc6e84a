/** `firmament serve`: the function service (docs/functions.md). */
import { parseArgs } from 'node:util';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { UsageError } from './args.js';
import { defaultStoreDir } from '../../vmm/snapshot/index.js';
import { startFunctionService, type PoolConfig, type ShapeConfig } from '../../vmm/functions/index.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const DEFAULT_RUNTIME = path.join(REPO, 'images/build/guests/function-runtime.elf');

export const SERVE_HELP = `firmament serve [options]: the function service, a warm pool of linked-clone VMs behind HTTP
  --port N             TCP port (default 8080; 0 picks a free one)
  --host ADDR          address to listen on (default 127.0.0.1)
  --pool N             warm VMs kept ready per shape (default 4)
  --max-vms N          VMs the host RAM is sized for, busy + warm (default max(16, 2 x pool x shapes))
  --config FILE        pool.json: {"shapes": [{"name", "memMiB", "vcpus", "image"?}], "warm"?, "maxVms"?, "idleTimeoutMs"?, "limitMs"?}
  --idle-timeout T     warm VMs beyond --pool go after T idle (ms, or 500ms/30s/5m; default 30s)
  --limit MS           default run-time limit of a function, virtual ms (default 100)
  --store DIR          snapshot store for bases and transaction checkpoints (default: the snapshot store)
  --tx-ttl T           a parked transaction expires after T (default 5m)
  --public-url URL     base URL external services call back on (default http://HOST:PORT)
  --functions DIR      preload every NAME.elf in DIR as function NAME (e.g. images/build/functions)
  Endpoints: POST /functions?name=N, POST /functions/N/invoke, POST /callbacks/TXID, GET /functions, GET /pool, GET /metrics`;

/** 250, 250ms, 30s, 5m -> milliseconds. */
export function parseDuration(text: string, option: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(text.trim());
  if (!m) throw new UsageError(`${option} ${text}: expected a duration like 500ms, 30s or 5m`);
  const n = Number(m[1]) * (m[2] === 's' ? 1000 : m[2] === 'm' ? 60_000 : 1);
  if (!Number.isFinite(n) || n <= 0) throw new UsageError(`${option} ${text}: must be positive`);
  return Math.round(n);
}

function whole(text: string | undefined, option: string, fallback: number, min: number, max: number): number {
  if (text === undefined) return fallback;
  const n = Number(text);
  if (!Number.isInteger(n) || n < min || n > max) throw new UsageError(`${option} ${text}: expected a whole number ${min}..${max}`);
  return n;
}

/** Reads pool.json, naming the file and field on every refusal. */
export function readPoolConfig(file: string): Partial<PoolConfig> & { limitMs?: number } {
  let doc: unknown;
  try {
    doc = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new UsageError(`--config ${file}: ${e instanceof Error ? e.message : String(e)}`);
  }
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) throw new UsageError(`${file}: expected an object`);
  const d = doc as Record<string, unknown>;
  const out: Partial<PoolConfig> & { limitMs?: number } = {};
  if (d['shapes'] !== undefined) {
    if (!Array.isArray(d['shapes']) || d['shapes'].length === 0) throw new UsageError(`${file}: shapes: expected a non-empty array`);
    out.shapes = d['shapes'].map((s: unknown, i: number): ShapeConfig => {
      const at = `${file}: shapes[${i}]`;
      if (s === null || typeof s !== 'object') throw new UsageError(`${at}: expected an object`);
      const r = s as Record<string, unknown>;
      if (typeof r['name'] !== 'string' || !/^[a-z0-9][a-z0-9_-]{0,31}$/.test(r['name'])) throw new UsageError(`${at}.name: expected 1-32 characters [a-z0-9_-]`);
      if (typeof r['memMiB'] !== 'number' || !Number.isInteger(r['memMiB']) || r['memMiB'] < 4 || r['memMiB'] > 1024) throw new UsageError(`${at}.memMiB: expected a whole number 4..1024`);
      const vcpus = r['vcpus'] ?? 1;
      if (vcpus !== 1) throw new UsageError(`${at}.vcpus: ${JSON.stringify(vcpus)}: the runtime serves on one vCPU`);
      const image = r['image'] === undefined ? DEFAULT_RUNTIME : path.resolve(path.dirname(file), String(r['image']));
      if (!existsSync(image)) throw new UsageError(`${at}.image: ${image} does not exist (build it: node tools/build-guests.mjs)`);
      return { name: r['name'], memMiB: r['memMiB'], vcpus: 1, image };
    });
  }
  for (const k of ['warm', 'maxVms', 'idleTimeoutMs', 'limitMs'] as const) {
    const v = d[k];
    if (v === undefined) continue;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < (k === 'warm' ? 0 : 1)) throw new UsageError(`${file}: ${k}: expected a whole number >= ${k === 'warm' ? 0 : 1}`);
    out[k] = v;
  }
  return out;
}

export async function serveCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      port: { type: 'string' }, host: { type: 'string' }, pool: { type: 'string' }, 'max-vms': { type: 'string' }, config: { type: 'string' },
      'idle-timeout': { type: 'string' }, limit: { type: 'string' }, store: { type: 'string' }, 'tx-ttl': { type: 'string' },
      'public-url': { type: 'string' }, functions: { type: 'string' }, help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(SERVE_HELP);
    return 0;
  }
  const file = values.config ? readPoolConfig(values.config) : {};
  const shapes = file.shapes ?? [{ name: 'default', memMiB: 8, vcpus: 1, image: DEFAULT_RUNTIME }];
  if (!existsSync(shapes[0]!.image)) throw new UsageError(`${shapes[0]!.image} does not exist (build it: node tools/build-guests.mjs)`);
  const warm = whole(values.pool, '--pool', file.warm ?? 4, 0, 256);
  const pool: PoolConfig = {
    shapes,
    warm,
    maxVms: whole(values['max-vms'], '--max-vms', file.maxVms ?? Math.max(16, 2 * warm * shapes.length), 1, 1024),
    idleTimeoutMs: values['idle-timeout'] ? parseDuration(values['idle-timeout'], '--idle-timeout') : file.idleTimeoutMs ?? 30_000,
  };
  const running = await startFunctionService({
    pool,
    storeDir: values.store ?? defaultStoreDir(),
    port: whole(values.port, '--port', 8080, 0, 65535),
    host: values.host ?? '127.0.0.1',
    limitMs: whole(values.limit, '--limit', file.limitMs ?? 100, 1, 60_000),
    txTtlMs: values['tx-ttl'] ? parseDuration(values['tx-ttl'], '--tx-ttl') : 300_000,
    ...(values['public-url'] ? { publicUrl: values['public-url'] } : {}),
  });
  if (values.functions) {
    for (const f of readdirSync(values.functions).filter((n) => n.endsWith('.elf')).sort()) {
      running.service.addFunction(f.slice(0, -4), new Uint8Array(readFileSync(path.join(values.functions, f))));
    }
  }
  const st = running.pool.status();
  console.log(`firmament serve: listening on ${running.url} (${st.shapes.map((s) => `${s.name}: ${s.memMiB} MiB x ${pool.warm} warm`).join(', ')}; max ${pool.maxVms} VMs; ${running.service.functions.size} functions)`);
  await new Promise<void>((resolve) => {
    const stop = (): void => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      resolve();
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
  await running.close();
  return 0;
}
