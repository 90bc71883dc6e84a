/**
 * The snapshot store: VM snapshots (a state record plus guest memory) kept
 * as OCI artifacts in a local OCI image layout, memory cut into
 * content-addressed chunks so chunks shared by several snapshots are stored
 * once and all-zero chunks are not stored at all. docs/snapshots.md.
 */
import os from 'node:os';
import path from 'node:path';
import fsp from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { decodeSnapshot, encodeSnapshot, SNAPSHOT_FORMAT_VERSION } from '../../machine/snapshot/codec.js';
import type { StateRecord } from '../../machine/state.js';
import { cutMemory, type ChunkEntry } from './chunks.js';
import { SnapshotStoreError } from './errors.js';
import {
  ANN_CREATED, ARTIFACT_TYPE, CHUNK_SIZE, checkRef, chunksOf, CONFIG_FORMAT_VERSION, hex, isDigest, MT_CHUNK, MT_CONFIG, MT_MANIFEST, MT_STATE,
  parseConfig, parseManifest, type Descriptor, type MemoryRange, type SnapshotConfig, type SnapshotManifest, type VmSnapshotData,
} from './format.js';
import { inParallel, isSnapshotEntry, Layout, sha256, type IndexEntry } from './layout.js';
import { pullSnapshot, pushSnapshot, type RegistryOptions, type TransferReport } from './registry.js';
import { stateDiffPaths } from './state-diff.js';

/** Blob files read or written at once. */
const IO_PARALLEL = 8;

export interface SaveOptions {
  /** Replace an existing snapshot of the same name. */
  force?: boolean;
  /** ISO 8601 time recorded as org.opencontainers.image.created; default now. Fixed for reproducible digests. */
  created?: string;
}

export interface SaveReport {
  ref: string;
  digest: string;
  memoryBytes: number;
  chunks: number;
  zeroChunks: number;
  /** Distinct non-zero chunks of this snapshot. */
  storedChunks: number;
  stateBytes: number;
  /** Blobs (chunks, state, config, manifest) this save added to the store, and their bytes. */
  newBlobs: number;
  newBytes: number;
  /** Blobs the store already had (shared with other snapshots). */
  reusedBlobs: number;
  reusedBytes: number;
  replaced: string | null;
}

export interface SnapshotSummary {
  ref: string;
  digest: string;
  created: string;
  memoryBytes: number;
  chunks: number;
  zeroChunks: number;
  /** Bytes of its distinct non-zero chunks plus its state blob. */
  storedBytes: number;
  meta: Record<string, string>;
}

/** A line of list(): a readable snapshot, or one whose manifest or config cannot be read (the reason named). */
export type SnapshotListEntry = (SnapshotSummary & { ok: true }) | { ok: false; ref: string; digest: string; error: string };

export interface SnapshotDetails extends SnapshotSummary {
  chunkSize: number;
  ranges: { gpa: number; length: number }[];
  storedChunks: number;
  /** Of storedChunks, how many another snapshot in this store also uses. */
  sharedChunks: number;
  state: { digest: string; size: number; formatVersion: number; fields: string[] };
  config: { digest: string; size: number };
}

export interface VerifyReport {
  ref: string;
  ok: boolean;
  problems: string[];
  blobsChecked: number;
  bytesChecked: number;
}

export interface ChunkDiff {
  a: string;
  b: string;
  chunkSize: number;
  /** Chunk positions (GPAs) in either snapshot. */
  chunks: number;
  /** Chunks whose content differs, or that only one side has (digest undefined = absent, null = zero). */
  changed: { gpa: number; length: number; a: string | null | undefined; b: string | null | undefined }[];
  /** Changed chunks merged into contiguous GPA ranges. */
  changedRanges: { gpa: number; length: number }[];
  changedBytes: number;
  sameBytes: number;
  memoryBytes: { a: number; b: number };
  state: { same: boolean; paths: string[] };
}

export interface GcReport {
  removedBlobs: number;
  freedBytes: number;
  staleStaging: number;
}

/** A snapshot as found through the index, its manifest and config checked. */
interface Resolved {
  entry: IndexEntry;
  manifest: SnapshotManifest;
  config: SnapshotConfig;
}

/** --store DIR, else $FIRMAMENT_SNAPSHOTS, else $XDG_DATA_HOME (default ~/.local/share)/firmament/snapshots. */
export function defaultStoreDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env['FIRMAMENT_SNAPSHOTS']) return env['FIRMAMENT_SNAPSHOTS'];
  const data = env['XDG_DATA_HOME'] || path.join(os.homedir(), '.local', 'share');
  return path.join(data, 'firmament', 'snapshots');
}

export class SnapshotStore {
  readonly layout: Layout;

  private constructor(readonly dir: string) {
    this.layout = new Layout(dir);
  }

  /** Nothing is created until the first save or pull. */
  static open(dir: string): SnapshotStore {
    return new SnapshotStore(path.resolve(dir));
  }

  async save(ref: string, s: VmSnapshotData, opts: SaveOptions = {}): Promise<SaveReport> {
    checkRef(ref);
    // Everything that can be refused is checked before the store is touched.
    if (!s || typeof s !== 'object' || !Array.isArray(s.memory)) throw new SnapshotStoreError(`save ${ref}: expected { state, memory: MemoryRange[] }`);
    if (s.state === null || typeof s.state !== 'object' || Array.isArray(s.state) || s.state instanceof Uint8Array) throw new SnapshotStoreError(`save ${ref}: state: expected a state record`);
    const stateBlob = encodeSnapshot(s.state);
    const { ranges, chunks } = cutMemory(s.memory, `save ${ref}: memory`);
    const meta = s.meta ?? {};
    for (const [k, v] of Object.entries(meta)) if (typeof v !== 'string') throw new SnapshotStoreError(`save ${ref}: meta.${k}: expected a string`);
    const created = opts.created ?? new Date().toISOString();

    const stored = chunks.filter((c) => c.digest !== null);
    const unique = new Map<string, Uint8Array>();
    for (const c of stored) if (!unique.has(c.digest!)) unique.set(c.digest!, c.bytes);
    const stateDigest = sha256(stateBlob);
    const config: SnapshotConfig = {
      formatVersion: CONFIG_FORMAT_VERSION,
      chunkSize: CHUNK_SIZE,
      created,
      meta,
      state: { digest: stateDigest, size: stateBlob.length },
      memory: { ranges, chunks: stored.map((c) => ({ gpa: c.gpa, length: c.length, digest: c.digest! })) },
    };
    const configBlob = Buffer.from(JSON.stringify(config));
    const manifest = {
      schemaVersion: 2,
      mediaType: MT_MANIFEST,
      artifactType: ARTIFACT_TYPE,
      config: { mediaType: MT_CONFIG, digest: sha256(configBlob), size: configBlob.length },
      layers: [{ mediaType: MT_STATE, digest: stateDigest, size: stateBlob.length }, ...[...unique].map(([digest, b]) => ({ mediaType: MT_CHUNK, digest, size: b.length }))],
      annotations: { [ANN_CREATED]: created },
    };
    const manifestBlob = Buffer.from(JSON.stringify(manifest));
    const manifestDigest = sha256(manifestBlob);
    const blobs = new Map<string, Uint8Array>([[stateDigest, stateBlob], ...unique, [manifest.config.digest, configBlob], [manifestDigest, manifestBlob]]);

    return this.layout.withLock(async () => {
      const index = await this.layout.readIndex();
      const old = index.find((e) => e.ref === ref);
      if (old && !opts.force) throw new SnapshotStoreError(`${this.dir}: snapshot '${ref}' already exists (${old.digest}); delete it or save with force to replace it`);
      const staging = await this.layout.newStaging();
      let newBytes = 0;
      let reusedBytes = 0;
      try {
        // Several files in flight at once (the thread pool overlaps them); staging.put dedups by digest.
        await inParallel([...blobs], IO_PARALLEL, async ([digest, bytes]) => {
          // A present blob of the right size is the same content (it is named by its hash); verify catches rot.
          if ((await this.layout.blobSize(digest)) === bytes.length) reusedBytes += bytes.length;
          else {
            await staging.put(digest, bytes);
            newBytes += bytes.length;
          }
        });
        const newBlobs = staging.count;
        await staging.commit();
        const entry: IndexEntry = { mediaType: MT_MANIFEST, artifactType: ARTIFACT_TYPE, digest: manifestDigest, size: manifestBlob.length, ref };
        await this.layout.writeIndex([...index.filter((e) => e.ref !== ref), entry].sort((x, y) => (x.ref < y.ref ? -1 : x.ref > y.ref ? 1 : 0)));
        return {
          ref, digest: manifestDigest, memoryBytes: ranges.reduce((n, r) => n + r.length, 0), chunks: chunks.length, zeroChunks: chunks.length - stored.length,
          storedChunks: unique.size, stateBytes: stateBlob.length, newBlobs, newBytes, reusedBlobs: blobs.size - newBlobs, reusedBytes, replaced: old?.digest ?? null,
        };
      } finally {
        await staging.discard();
      }
    });
  }

  /** The snapshot's state and memory; every digest and CRC is checked before anything is returned. */
  async load(ref: string): Promise<VmSnapshotData> {
    const r = await this.resolve(ref);
    const state = await this.readState(r);
    const memory: MemoryRange[] = r.config.memory.ranges.map((x) => ({ gpa: x.gpa, bytes: new Uint8Array(x.length) }));
    const rangeOf = (gpa: number) => memory.find((m) => gpa >= m.gpa && gpa < m.gpa + m.bytes.length)!;
    // Reads overlap in the thread pool; each chunk is still checked against its digest before it is used.
    await inParallel(r.config.memory.chunks, IO_PARALLEL, async (c) => {
      const bytes = await this.layout.readBlob({ digest: c.digest, size: c.length }, `snapshot '${ref}': memory chunk at GPA ${hex(c.gpa)}`);
      const m = rangeOf(c.gpa);
      m.bytes.set(bytes, c.gpa - m.gpa);
    });
    return { state, memory, meta: { ...r.config.meta } };
  }

  /** The state record alone (restores that bring memory over incrementally). */
  async loadState(ref: string): Promise<StateRecord> {
    return this.readState(await this.resolve(ref));
  }

  /** Names of the snapshots in the index, without reading them. */
  async names(): Promise<string[]> {
    return (await this.layout.readIndex()).filter(isSnapshotEntry).map((e) => e.ref);
  }

  /** Every snapshot in the index; one that cannot be read is listed with the reason, not dropped and not fatal. */
  async list(): Promise<SnapshotListEntry[]> {
    const out: SnapshotListEntry[] = [];
    for (const e of (await this.layout.readIndex()).filter(isSnapshotEntry)) {
      try {
        out.push({ ok: true, ...summary(await this.resolve(e.ref)) });
      } catch (err) {
        if (!(err instanceof SnapshotStoreError)) throw err;
        out.push({ ok: false, ref: e.ref, digest: e.digest, error: err.message });
      }
    }
    return out;
  }

  async inspect(ref: string): Promise<SnapshotDetails> {
    const r = await this.resolve(ref);
    const state = await this.readState(r);
    const others = new Set<string>();
    for (const e of (await this.layout.readIndex()).filter(isSnapshotEntry)) {
      if (e.ref === r.entry.ref) continue;
      const o = await this.resolve(e.ref).catch(() => null);
      for (const l of o?.manifest.layers.slice(1) ?? []) others.add(l.digest);
    }
    const chunkLayers = r.manifest.layers.slice(1);
    return {
      ...summary(r),
      chunkSize: r.config.chunkSize,
      ranges: r.config.memory.ranges,
      storedChunks: chunkLayers.length,
      sharedChunks: chunkLayers.filter((l) => others.has(l.digest)).length,
      state: { digest: r.config.state.digest, size: r.config.state.size, formatVersion: SNAPSHOT_FORMAT_VERSION, fields: Object.keys(state).sort() },
      config: { digest: r.manifest.config.digest, size: r.manifest.config.size },
    };
  }

  /** Re-reads and re-hashes every blob of the snapshot; collects all problems instead of stopping at the first. */
  async verify(ref: string): Promise<VerifyReport> {
    const report: VerifyReport = { ref, ok: false, problems: [], blobsChecked: 0, bytesChecked: 0 };
    let r: Resolved;
    try {
      r = await this.resolve(ref);
    } catch (e) {
      report.problems.push(messageOf(e));
      return report;
    }
    report.blobsChecked += 2;
    report.bytesChecked += r.entry.size + r.manifest.config.size;
    try {
      await this.readState(r);
    } catch (e) {
      report.problems.push(messageOf(e));
    }
    report.blobsChecked++;
    report.bytesChecked += r.config.state.size;
    const gpaOf = new Map<string, number>();
    for (const c of r.config.memory.chunks) if (!gpaOf.has(c.digest)) gpaOf.set(c.digest, c.gpa);
    for (const l of r.manifest.layers.slice(1)) {
      try {
        await this.layout.readBlob(l, `snapshot '${ref}': memory chunk at GPA ${hex(gpaOf.get(l.digest) ?? 0)}`);
      } catch (e) {
        report.problems.push(messageOf(e));
      }
      report.blobsChecked++;
      report.bytesChecked += l.size;
    }
    report.ok = report.problems.length === 0;
    return report;
  }

  /** Every chunk of the snapshot's memory in GPA order; digest null = all zero. */
  async chunkTable(ref: string): Promise<ChunkEntry[]> {
    return chunkTableOf((await this.resolve(ref)).config);
  }

  /** One stored chunk by digest, checked. */
  async readChunk(digest: string): Promise<Uint8Array> {
    if (!isDigest(digest)) throw new SnapshotStoreError(`readChunk: ${JSON.stringify(digest)} is not a sha256 digest`);
    const size = await this.layout.blobSize(digest);
    if (size === null) throw new SnapshotStoreError(`${this.dir}: chunk blob ${digest} is missing`);
    if (size > CHUNK_SIZE) throw new SnapshotStoreError(`${this.dir}: blob ${digest} is ${size} bytes, larger than a memory chunk`);
    return this.layout.readBlob({ digest, size }, `${this.dir}: chunk`);
  }

  async diff(a: string, b: string): Promise<ChunkDiff> {
    const [ra, rb] = [await this.resolve(a), await this.resolve(b)];
    const ta = new Map(chunkTableOf(ra.config).map((c) => [c.gpa, c]));
    const tb = new Map(chunkTableOf(rb.config).map((c) => [c.gpa, c]));
    const gpas = [...new Set([...ta.keys(), ...tb.keys()])].sort((x, y) => x - y);
    const changed: ChunkDiff['changed'] = [];
    let sameBytes = 0;
    for (const gpa of gpas) {
      const ca = ta.get(gpa);
      const cb = tb.get(gpa);
      if (ca && cb && ca.length === cb.length && ca.digest === cb.digest) sameBytes += ca.length;
      else changed.push({ gpa, length: Math.max(ca?.length ?? 0, cb?.length ?? 0), a: ca?.digest, b: cb?.digest });
    }
    const changedRanges: { gpa: number; length: number }[] = [];
    for (const c of changed) {
      const last = changedRanges.at(-1);
      if (last && last.gpa + last.length === c.gpa) last.length += c.length;
      else changedRanges.push({ gpa: c.gpa, length: c.length });
    }
    const sameState = ra.config.state.digest === rb.config.state.digest;
    const paths = sameState ? [] : stateDiffPaths(await this.readState(ra), await this.readState(rb));
    const total = (c: SnapshotConfig) => c.memory.ranges.reduce((n, r) => n + r.length, 0);
    return {
      a, b, chunkSize: CHUNK_SIZE, chunks: gpas.length, changed, changedRanges, changedBytes: changed.reduce((n, c) => n + c.length, 0), sameBytes,
      memoryBytes: { a: total(ra.config), b: total(rb.config) }, state: { same: sameState, paths },
    };
  }

  /** Removes the name; its blobs stay until gc() (another snapshot may share them). */
  async delete(ref: string): Promise<{ ref: string; digest: string }> {
    checkRef(ref);
    if (!(await this.exists())) throw new SnapshotStoreError(`${this.dir}: no snapshot '${ref}' (the store is empty)`);
    return this.layout.withLock(async () => {
      const index = await this.layout.readIndex();
      const e = index.find((x) => x.ref === ref);
      if (!e) throw new SnapshotStoreError(`${this.dir}: no snapshot '${ref}'`);
      await this.layout.writeIndex(index.filter((x) => x !== e));
      return { ref, digest: e.digest };
    });
  }

  /** Deletes blobs no indexed manifest refers to. Refuses while a snapshot's manifest or config is unreadable, rather than guess. */
  async gc(): Promise<GcReport> {
    if (!(await this.exists())) return { removedBlobs: 0, freedBytes: 0, staleStaging: 0 };
    return this.layout.withLock(async () => {
      const index = await this.layout.readIndex();
      const foreign = index.filter((e) => !isSnapshotEntry(e));
      if (foreign.length > 0) throw new SnapshotStoreError(`gc refused: ${this.dir} also holds ${foreign.length} manifest(s) that are not Firmament snapshots (e.g. '${foreign[0]!.ref}'); gc only runs on a store of snapshots`);
      const live = new Set<string>();
      for (const e of index) {
        live.add(e.digest);
        let m: SnapshotManifest;
        try {
          m = parseManifest(await this.layout.readBlob(e, `snapshot '${e.ref}': manifest`), `snapshot '${e.ref}': manifest ${e.digest}`);
        } catch (err) {
          throw new SnapshotStoreError(`gc refused: ${messageOf(err)}; delete or repair that snapshot first`);
        }
        live.add(m.config.digest);
        for (const l of m.layers) live.add(l.digest);
      }
      let removedBlobs = 0;
      let freedBytes = 0;
      for (const d of await this.layout.listBlobs()) {
        if (live.has(d) || !isDigest(d)) continue;
        const size = (await this.layout.blobSize(d)) ?? 0;
        await fsp.rm(this.layout.blobPath(d), { force: true });
        removedBlobs++;
        freedBytes += size;
      }
      return { removedBlobs, freedBytes, staleStaging: await this.layout.removeStaleStaging() };
    });
  }

  /** Uploads the snapshot to http://HOST:PORT/REPO[:TAG] (default tag: the snapshot's name); blobs the registry has are skipped. */
  async push(ref: string, registry: string, opts: RegistryOptions = {}): Promise<TransferReport> {
    const r = await this.resolve(ref);
    await this.readState(r); // its CRCs: a record the codec refuses is never published
    return pushSnapshot(this.layout, { ref, manifest: r.manifest, manifestDigest: r.entry.digest, manifestSize: r.entry.size }, registry, opts);
  }

  /** Downloads http://HOST:PORT/REPO:TAG as localRef (default: the tag), fetching only blobs this store lacks. */
  async pull(registryRef: string, localRef?: string, opts: RegistryOptions & { force?: boolean } = {}): Promise<TransferReport> {
    return pullSnapshot(this.layout, registryRef, localRef, opts, (state) => {
      decodeSnapshot(state);
    });
  }

  // ------------------------------------------------------------ internals

  private async exists(): Promise<boolean> {
    return existsSync(path.join(this.dir, 'oci-layout'));
  }

  private async resolve(ref: string): Promise<Resolved> {
    const index = await this.layout.readIndex();
    const entry = isDigest(ref) ? index.find((e) => e.digest === ref) : index.find((e) => e.ref === checkRef(ref));
    if (!entry) {
      const names = index.filter(isSnapshotEntry).map((e) => e.ref);
      throw new SnapshotStoreError(`${this.dir}: no snapshot '${ref}'${names.length ? ` (have: ${names.slice(0, 10).join(', ')}${names.length > 10 ? ', ...' : ''})` : ' (the store is empty)'}`);
    }
    const name = `snapshot '${entry.ref}'`;
    if (!isSnapshotEntry(entry)) throw new SnapshotStoreError(`${name}: index entry ${entry.digest} is a ${entry.artifactType ?? entry.mediaType}, not a Firmament VM snapshot`);
    const manifest = parseManifest(await this.layout.readBlob(entry, `${name}: manifest`), `${name}: manifest ${entry.digest}`);
    const configBytes = await this.layout.readBlob(manifest.config, `${name}: config`);
    const config = parseConfig(configBytes, `${name}: config ${manifest.config.digest}`, manifest);
    return { entry, manifest, config };
  }

  private async readState(r: Resolved): Promise<StateRecord> {
    const name = `snapshot '${r.entry.ref}'`;
    const bytes = await this.layout.readBlob(r.manifest.layers[0]!, `${name}: state`);
    try {
      return decodeSnapshot(bytes);
    } catch (e) {
      throw new SnapshotStoreError(`${name}: state blob ${r.config.state.digest}: ${messageOf(e)}`);
    }
  }
}

function chunkTableOf(config: SnapshotConfig): ChunkEntry[] {
  const stored = new Map(config.memory.chunks.map((c) => [c.gpa, c.digest]));
  return [...chunksOf(config.memory.ranges)].map((c) => ({ gpa: c.gpa, length: c.length, digest: stored.get(c.gpa) ?? null }));
}

function summary(r: Resolved): SnapshotSummary {
  const chunks = [...chunksOf(r.config.memory.ranges)].length;
  const layers: Descriptor[] = r.manifest.layers;
  return {
    ref: r.entry.ref,
    digest: r.entry.digest,
    created: r.config.created,
    memoryBytes: r.config.memory.ranges.reduce((n, x) => n + x.length, 0),
    chunks,
    zeroChunks: chunks - r.config.memory.chunks.length,
    storedBytes: layers.reduce((n, l) => n + l.size, 0),
    meta: { ...r.config.meta },
  };
}

function messageOf(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
