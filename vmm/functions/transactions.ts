/**
 * Transaction checkpoints (docs/functions.md): a VM parked on an external
 * call is stored in the snapshot store as `fn-tx-<txid>` (its state plus
 * private pages; the shape's base is stored once as its own snapshot). Beside
 * the store, `fn-transactions/` holds one claim file per answered id (created
 * exclusively, so a callback is answered once, even by two processes sharing
 * the store) and one outcome file per finished transaction, which the process
 * that holds the original request waits for.
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { SnapshotStore } from '../snapshot/index.js';
import type { StateRecord } from '../../machine/state.js';
import type { ParkedVm } from './pool.js';

export const TXID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** A refusal that maps to an HTTP status. */
export class TransactionError extends Error {
  constructor(readonly httpStatus: number, message: string) {
    super(message);
    this.name = 'TransactionError';
  }
}

/** What a finished transaction became: the function's answer, or another park under a new id. */
export type TransactionOutcome = { kind: 'result'; httpStatus: number; result: Record<string, unknown> } | { kind: 'parked'; next: string } | { kind: 'error'; httpStatus: number; error: string };

export class TransactionStore {
  readonly dir: string;

  constructor(
    readonly store: SnapshotStore,
    readonly ttlMs: number,
  ) {
    this.dir = path.join(store.dir, 'fn-transactions');
  }

  static ref(txid: string): string {
    return `fn-tx-${txid}`;
  }

  /** Stores the parked VM under the id; after this, any process sharing the store can resume it. */
  async park(txid: string, parked: ParkedVm): Promise<{ expiresAt: string }> {
    const expiresAt = new Date(Date.now() + this.ttlMs).toISOString();
    await fsp.mkdir(this.dir, { recursive: true });
    await this.store.save(TransactionStore.ref(txid), {
      state: parked.state,
      memory: parked.memory,
      meta: { kind: 'fn-transaction', shape: parked.shape, baseKey: parked.baseKey, function: parked.function, limitMs: String(parked.limitMs), url: parked.request.url, expiresAt },
    });
    return { expiresAt };
  }

  /**
   * Takes the parked VM for a callback: unknown ids 404, expired 410, answered
   * (or being answered) 409. The claim is an exclusive file create.
   */
  async claim(txid: string): Promise<ParkedVm> {
    if (!TXID_RE.test(txid)) throw new TransactionError(400, `transaction id ${JSON.stringify(txid)} is not a UUID`);
    if (fs.existsSync(this.claimFile(txid))) {
      const why = await fsp.readFile(this.claimFile(txid), 'utf8').catch(() => '');
      if (why.startsWith('expired')) throw new TransactionError(410, `transaction ${txid} expired (${why.trim()}); its function was answered with 504`);
      throw new TransactionError(409, `transaction ${txid} was already answered`);
    }
    const ref = TransactionStore.ref(txid);
    if (!(await this.store.names()).includes(ref)) throw new TransactionError(404, `no parked function under transaction ${txid}`);
    const data = await this.store.load(ref);
    const meta = data.meta ?? {};
    const expiresAt = Date.parse(meta['expiresAt'] ?? '');
    if (!(expiresAt > Date.now())) {
      await this.expire(txid).catch(() => undefined);
      throw new TransactionError(410, `transaction ${txid} expired at ${meta['expiresAt'] ?? '?'}`);
    }
    await fsp.mkdir(this.dir, { recursive: true });
    try {
      await fsp.writeFile(this.claimFile(txid), `${process.pid} ${new Date().toISOString()}\n`, { flag: 'wx' });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EEXIST') throw new TransactionError(409, `transaction ${txid} was already answered`);
      throw e;
    }
    const limitMs = Number(meta['limitMs']);
    return {
      shape: meta['shape'] ?? '',
      baseKey: meta['baseKey'] ?? '',
      function: meta['function'] ?? '',
      limitMs: Number.isFinite(limitMs) ? limitMs : 100,
      state: data.state as StateRecord,
      memory: data.memory,
      request: { url: meta['url'] ?? '', body: new Uint8Array(0) },
    };
  }

  /** Records how the transaction ended (for the process holding the original request) and drops its checkpoint. */
  async finish(txid: string, outcome: TransactionOutcome): Promise<void> {
    await fsp.mkdir(this.dir, { recursive: true });
    const tmp = `${this.outcomeFile(txid)}.${process.pid}.tmp`;
    await fsp.writeFile(tmp, JSON.stringify(outcome));
    await fsp.rename(tmp, this.outcomeFile(txid));
    await this.store.delete(TransactionStore.ref(txid)).catch(() => undefined);
  }

  /**
   * An expired checkpoint is dropped; its id stays claimed, so a late callback
   * gets 409 (or 410 while the checkpoint is still there), never a restore.
   * False when a callback claimed it first.
   */
  async expire(txid: string): Promise<boolean> {
    await fsp.mkdir(this.dir, { recursive: true });
    try {
      await fsp.writeFile(this.claimFile(txid), `expired ${new Date().toISOString()}\n`, { flag: 'wx' });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
      throw e;
    }
    await this.finish(txid, { kind: 'error', httpStatus: 504, error: `transaction ${txid}: no callback within ${this.ttlMs} ms` });
    return true;
  }

  /** Gives a claim back (the resume could not start: no VM free); the callback may be retried. */
  async unclaim(txid: string): Promise<void> {
    await fsp.rm(this.claimFile(txid), { force: true });
  }

  /** The outcome, once some process wrote it; null while the transaction is open. */
  async outcome(txid: string): Promise<TransactionOutcome | null> {
    try {
      return JSON.parse(await fsp.readFile(this.outcomeFile(txid), 'utf8')) as TransactionOutcome;
    } catch {
      return null;
    }
  }

  private claimFile(txid: string): string {
    return path.join(this.dir, `${txid}.claim`);
  }

  private outcomeFile(txid: string): string {
    return path.join(this.dir, `${txid}.outcome.json`);
  }
}
