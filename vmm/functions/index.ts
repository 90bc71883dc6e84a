/** The function service: pool + transaction store + HTTP API, as `firmament serve` starts it (docs/functions.md). */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { VmImage } from '../../hypervisor/hypervisor.js';
import { SnapshotStore, SnapshotStoreError } from '../snapshot/index.js';
import { FunctionPool, type PoolConfig, type ShapeConfig } from './pool.js';
import { FunctionService } from './service.js';
import { TransactionStore } from './transactions.js';

export { FunctionPool, PoolExhausted, type PoolConfig, type ShapeConfig, type InvocationResult } from './pool.js';
export { FunctionService } from './service.js';
export { TransactionStore } from './transactions.js';

export interface FunctionServiceOptions {
  pool: PoolConfig;
  storeDir: string;
  port: number;
  host?: string;
  limitMs: number;
  txTtlMs: number;
  publicUrl?: string;
  outcomePollMs?: number;
}

/** The store name of a shape's base: the runtime image's hash and the shape, so a changed runtime gets a new base. */
export function baseRef(s: ShapeConfig): string {
  const sha = createHash('sha256').update(readFileSync(s.image)).digest('hex').slice(0, 16);
  return `fn-base-${s.name}-${s.memMiB}m-${s.vcpus}c-${sha}`;
}

export interface RunningService {
  service: FunctionService;
  pool: FunctionPool;
  url: string;
  port: number;
  close(): Promise<void>;
}

export async function startFunctionService(o: FunctionServiceOptions): Promise<RunningService> {
  const store = SnapshotStore.open(o.storeDir);
  const load = async (s: ShapeConfig): Promise<VmImage | null> => {
    const ref = baseRef(s);
    if (!(await store.names()).includes(ref)) return null;
    const d = await store.load(ref);
    return { state: d.state, memory: d.memory };
  };
  const booted = async (s: ShapeConfig, image: VmImage): Promise<VmImage> => {
    try {
      await store.save(baseRef(s), { state: image.state, memory: image.memory, meta: { kind: 'fn-base', shape: s.name } });
    } catch (e) {
      // Another process stored this base first: use that one, so checkpoints move between the two.
      if (!(e instanceof SnapshotStoreError)) throw e;
    }
    // Every process runs the stored form (the same bytes and key), not its own boot's.
    return (await load(s)) ?? image;
  };
  const pool = await FunctionPool.start(o.pool, { load, booted });
  const tx = new TransactionStore(store, o.txTtlMs);
  const service = new FunctionService(pool, tx, { limitMs: o.limitMs, ...(o.publicUrl ? { publicUrl: o.publicUrl } : {}), ...(o.outcomePollMs ? { outcomePollMs: o.outcomePollMs } : {}) });
  try {
    const { port, url } = await service.listen(o.port, o.host ?? '127.0.0.1');
    return {
      service, pool, url, port,
      async close() {
        await service.close();
        await pool.close();
      },
    };
  } catch (e) {
    await service.close();
    await pool.close();
    throw e;
  }
}
