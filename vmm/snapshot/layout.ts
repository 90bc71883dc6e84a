/**
 * The store on disk: an OCI image layout (oci-layout, index.json,
 * blobs/sha256/<hex>). Blobs are immutable and named by their digest;
 * index.json is the only file that changes, always by write-to-temp + rename.
 * New blobs are written to a staging folder inside the store first and moved
 * into blobs/ only once a whole save or pull has succeeded, so a refused or
 * failed one leaves the store as it was.
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { SnapshotStoreError } from './errors.js';
import { ARTIFACT_TYPE, isDigest, MT_INDEX, MT_MANIFEST, parseDescriptor, parseJson, REF_NAME, type Descriptor } from './format.js';

const OCI_LAYOUT = '{"imageLayoutVersion":"1.0.0"}';
const STAGING_PREFIX = '.staging-';
const LOCK_FILE = '.lock';

export const sha256 = (b: Uint8Array): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

export interface IndexEntry extends Descriptor {
  ref: string;
}

export class Layout {
  constructor(readonly dir: string) {}

  blobPath(digest: string): string {
    // Digests come from files and registries: never let one name a path outside blobs/.
    if (!isDigest(digest)) throw new SnapshotStoreError(`${this.dir}: ${JSON.stringify(digest)} is not a sha256 digest`);
    return path.join(this.dir, 'blobs', 'sha256', digest.slice(7));
  }

  /** Size of a stored blob, or null when it is absent. */
  async blobSize(digest: string): Promise<number | null> {
    try {
      return (await fsp.stat(this.blobPath(digest))).size;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw e;
    }
  }

  /** A blob, checked against its descriptor's size and digest; `what` names it in errors. */
  async readBlob(d: { digest: string; size: number }, what: string): Promise<Uint8Array> {
    const file = this.blobPath(d.digest);
    let bytes: Uint8Array;
    try {
      const fh = await fsp.open(file, 'r');
      try {
        const st = await fh.stat();
        if (st.size !== d.size) throw new SnapshotStoreError(`${what}: blob ${d.digest} is ${st.size} bytes, expected ${d.size} (${st.size < d.size ? 'truncated' : 'corrupt'}): ${file}`);
        bytes = new Uint8Array(d.size);
        const { bytesRead } = await fh.read(bytes, 0, d.size, 0);
        if (bytesRead !== d.size) throw new SnapshotStoreError(`${what}: blob ${d.digest}: read ${bytesRead} of ${d.size} bytes (truncated): ${file}`);
      } finally {
        await fh.close();
      }
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new SnapshotStoreError(`${what}: blob ${d.digest} is missing: ${file}`);
      throw e;
    }
    const actual = sha256(bytes);
    if (actual !== d.digest) throw new SnapshotStoreError(`${what}: blob ${d.digest} is corrupt: its content hashes to ${actual}: ${file}`);
    return bytes;
  }

  async readIndex(): Promise<IndexEntry[]> {
    const file = path.join(this.dir, 'index.json');
    let bytes: Uint8Array;
    try {
      bytes = await fsp.readFile(file);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw e;
    }
    const o = parseJson(bytes, file) as Record<string, unknown> | null;
    if (o === null || typeof o !== 'object' || o['schemaVersion'] !== 2 || !Array.isArray(o['manifests'])) throw new SnapshotStoreError(`${file}: not an OCI image index (schemaVersion 2 with a manifests array)`);
    return o['manifests'].map((m, i) => {
      const d = parseDescriptor(m, `${file}: manifests[${i}]`);
      return { ...d, ref: d.annotations?.[REF_NAME] ?? '' };
    });
  }

  async writeIndex(entries: IndexEntry[]): Promise<void> {
    const manifests = entries.map(({ ref, ...d }) => ({ ...d, annotations: { ...d.annotations, [REF_NAME]: ref } }));
    const json = JSON.stringify({ schemaVersion: 2, mediaType: MT_INDEX, manifests }, null, 2) + '\n';
    await atomicWrite(path.join(this.dir, 'index.json'), Buffer.from(json));
  }

  /** Creates oci-layout, index.json and blobs/sha256 when absent; refuses a folder that is something else. */
  private async ensure(): Promise<void> {
    const marker = path.join(this.dir, 'oci-layout');
    if (existsSync(marker)) {
      const v = parseJson(await fsp.readFile(marker), marker) as { imageLayoutVersion?: unknown } | null;
      if (v?.imageLayoutVersion !== '1.0.0') throw new SnapshotStoreError(`${marker}: imageLayoutVersion ${JSON.stringify(v?.imageLayoutVersion)}, this build writes 1.0.0`);
    } else {
      const others = (await fsp.readdir(this.dir)).filter((n) => n !== 'blobs' && !n.startsWith('.'));
      if (others.length > 0) throw new SnapshotStoreError(`${this.dir}: not an OCI image layout (no oci-layout file) and not empty (${others.slice(0, 3).join(', ')}); give an empty or new folder`);
      await atomicWrite(marker, Buffer.from(OCI_LAYOUT));
    }
    await fsp.mkdir(path.join(this.dir, 'blobs', 'sha256'), { recursive: true });
    if (!existsSync(path.join(this.dir, 'index.json'))) await this.writeIndex([]);
  }

  /** Runs fn holding the store's lock (one writer at a time; a crashed holder's lock goes stale). */
  async withLock<T>(fn: () => Promise<T>): Promise<T> {
    await fsp.mkdir(this.dir, { recursive: true });
    let release: () => Promise<void>;
    // proper-lockfile's default is to throw from a timer (a host crash) when the lock is lost; record it instead.
    let lost: Error | null = null;
    // Loaded here, not at start-up: proper-lockfile brings graceful-fs, which patches fs (~30 ms).
    const { default: lockfile } = await import('proper-lockfile');
    try {
      release = await lockfile.lock(this.dir, {
        lockfilePath: path.join(this.dir, LOCK_FILE),
        realpath: false,
        stale: 30_000,
        retries: { retries: 60, factor: 1.3, minTimeout: 50, maxTimeout: 1000 },
        onCompromised: (e) => (lost = e),
      });
    } catch (e) {
      throw new SnapshotStoreError(`${this.dir}: the store is locked by another writer (${(e as Error).message})`);
    }
    let result: T;
    try {
      await this.ensure(); // under the lock: two first writers must not both create the layout
      result = await fn();
    } finally {
      if (!lost) await release();
    }
    if (lost) throw new SnapshotStoreError(`${this.dir}: the store's lock was lost while writing (${(lost as Error).message}); run verify`);
    return result;
  }

  async newStaging(): Promise<Staging> {
    const dir = path.join(this.dir, `${STAGING_PREFIX}${process.pid}-${randomBytes(6).toString('hex')}`);
    await fsp.mkdir(dir);
    return new Staging(this, dir);
  }

  /** Staging folders left by a process that died mid-save (caller holds the lock). */
  async removeStaleStaging(): Promise<number> {
    const names = (await fsp.readdir(this.dir)).filter((n) => n.startsWith(STAGING_PREFIX));
    for (const n of names) await fsp.rm(path.join(this.dir, n), { recursive: true, force: true });
    return names.length;
  }

  async listBlobs(): Promise<string[]> {
    try {
      return (await fsp.readdir(path.join(this.dir, 'blobs', 'sha256'))).map((h) => `sha256:${h}`);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw e;
    }
  }
}

/** fsyncs (or reads) in flight at once: libuv's pool has 4 threads by default; more only queue there. */
const SYNC_PARALLEL = 8;

/** Runs `fn` over `items` with at most `limit` calls in flight; the first failure rejects (after the others settle). */
export async function inParallel<T>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<void>): Promise<void> {
  let next = 0;
  let failed: { e: unknown } | null = null;
  const worker = async (): Promise<void> => {
    while (next < items.length && !failed) {
      const i = next++;
      try {
        await fn(items[i]!, i);
      } catch (e) {
        failed ??= { e };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  if (failed) throw (failed as { e: unknown }).e;
}

/** Blobs of one save or pull, moved into blobs/ together by commit(). */
export class Staging {
  private readonly staged = new Map<string, string>();

  constructor(
    private readonly layout: Layout,
    readonly dir: string,
  ) {}

  has(digest: string): boolean {
    return this.staged.has(digest);
  }

  /** Stages bytes whose digest the caller has computed or checked. */
  async put(digest: string, bytes: Uint8Array): Promise<void> {
    if (this.staged.has(digest)) return;
    const file = path.join(this.dir, digest.slice(7));
    await fsp.writeFile(file, bytes);
    this.staged.set(digest, file);
  }

  async read(digest: string): Promise<Uint8Array | null> {
    const f = this.staged.get(digest);
    return f ? fsp.readFile(f) : null;
  }

  get count(): number {
    return this.staged.size;
  }

  /**
   * fsyncs and renames every staged blob into blobs/sha256 (same filesystem, so each rename is atomic).
   * The fsyncs run side by side (libuv's thread pool): the filesystem commits them in a few journal
   * transactions instead of one per chunk, and every blob is still on disk before any rename, so the
   * index that names them (written after commit) never points at a blob a crash could lose.
   */
  async commit(): Promise<void> {
    const staged = [...this.staged];
    await inParallel(staged, SYNC_PARALLEL, async ([, file]) => {
      const fh = await fsp.open(file, 'r+');
      try {
        await fh.datasync();
      } finally {
        await fh.close();
      }
    });
    for (const [digest, file] of staged) await fsp.rename(file, this.layout.blobPath(digest));
    this.staged.clear();
  }

  async discard(): Promise<void> {
    await fsp.rm(this.dir, { recursive: true, force: true });
  }
}

export async function atomicWrite(file: string, bytes: Uint8Array): Promise<void> {
  const tmp = `${file}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    const fh = await fsp.open(tmp, 'wx');
    try {
      await fh.writeFile(bytes);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await fsp.rename(tmp, file);
  } catch (e) {
    await fsp.rm(tmp, { force: true });
    throw e;
  }
}

export function isSnapshotEntry(e: IndexEntry): boolean {
  return e.mediaType === MT_MANIFEST && e.artifactType === ARTIFACT_TYPE;
}
