/**
 * The snapshot as an OCI artifact (docs/snapshots.md): media types, the
 * config blob's shape, and the checks that turn a manifest or config read
 * from disk or a registry into typed data, or a clear refusal naming the field.
 */
import type { StateRecord } from '../../machine/state.js';
import { SnapshotStoreError } from './errors.js';

export const MT_INDEX = 'application/vnd.oci.image.index.v1+json';
export const MT_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
export const ARTIFACT_TYPE = 'application/vnd.firmament.vm-snapshot.v1+json';
export const MT_CONFIG = 'application/vnd.firmament.vm-snapshot.config.v1+json';
/** The state record, encoded with machine/snapshot/codec.ts (FMSNAP02, CRC per section). */
export const MT_STATE = 'application/vnd.firmament.vm-state.v2';
/** One memory chunk: raw guest-physical bytes. */
export const MT_CHUNK = 'application/vnd.firmament.memory-chunk.v1';
export const REF_NAME = 'org.opencontainers.image.ref.name';
export const ANN_CREATED = 'org.opencontainers.image.created';

/** Memory is cut at GPA multiples of this; a chunk is the unit of dedup, diff and transfer. */
export const CHUNK_SIZE = 64 * 1024;
export const PAGE_SIZE = 4096;
export const CONFIG_FORMAT_VERSION = 1;

/** Caps on what we read from disk or a registry before trusting it. */
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;
export const MAX_CONFIG_BYTES = 64 * 1024 * 1024;
export const MAX_STATE_BYTES = 1024 * 1024 * 1024;

export interface MemoryRange {
  /** Page aligned. */
  gpa: number;
  /** Page aligned length. */
  bytes: Uint8Array;
}

export interface VmSnapshotData {
  state: StateRecord;
  memory: MemoryRange[];
  meta?: Record<string, string>;
}

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
  artifactType?: string;
}

export interface SnapshotManifest {
  schemaVersion: 2;
  mediaType: typeof MT_MANIFEST;
  artifactType: typeof ARTIFACT_TYPE;
  config: Descriptor;
  layers: Descriptor[];
  annotations?: Record<string, string>;
}

/** One stored chunk; chunks absent from the table inside a range are all zero. */
export interface StoredChunk {
  gpa: number;
  length: number;
  digest: string;
}

export interface SnapshotConfig {
  formatVersion: typeof CONFIG_FORMAT_VERSION;
  chunkSize: number;
  created: string;
  meta: Record<string, string>;
  state: { digest: string; size: number };
  memory: { ranges: { gpa: number; length: number }[]; chunks: StoredChunk[] };
}

const DIGEST_RE = /^sha256:[0-9a-f]{64}$/;
/** Refs are OCI tags, so a local ref can be a registry tag unchanged. */
const REF_RE = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/;

export function checkRef(ref: string): string {
  if (!REF_RE.test(ref)) throw new SnapshotStoreError(`snapshot name ${JSON.stringify(ref)}: expected 1-128 characters [A-Za-z0-9_.-], not starting with '.' or '-' (an OCI tag)`);
  return ref;
}

export function isDigest(d: unknown): d is string {
  return typeof d === 'string' && DIGEST_RE.test(d);
}

export const hex = (n: number) => `0x${n.toString(16)}`;

type Json = Record<string, unknown>;

function obj(v: unknown, where: string): Json {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new SnapshotStoreError(`${where}: expected an object`);
  return v as Json;
}

function uint(v: unknown, where: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw new SnapshotStoreError(`${where}: expected a non-negative integer, got ${JSON.stringify(v)}`);
  return v;
}

function digest(v: unknown, where: string): string {
  if (!isDigest(v)) throw new SnapshotStoreError(`${where}: expected sha256:<64 hex digits>, got ${JSON.stringify(v)?.slice(0, 80)}`);
  return v;
}

function strings(v: unknown, where: string): Record<string, string> {
  if (v === undefined) return {};
  const o = obj(v, where);
  for (const [k, x] of Object.entries(o)) if (typeof x !== 'string') throw new SnapshotStoreError(`${where}.${k}: expected a string`);
  return o as Record<string, string>;
}

export function parseJson(bytes: Uint8Array, where: string): unknown {
  try {
    return JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch (e) {
    throw new SnapshotStoreError(`${where}: not JSON (${(e as Error).message})`);
  }
}

export function parseDescriptor(v: unknown, where: string): Descriptor {
  const o = obj(v, where);
  if (typeof o['mediaType'] !== 'string') throw new SnapshotStoreError(`${where}.mediaType: expected a string`);
  const d: Descriptor = { mediaType: o['mediaType'], digest: digest(o['digest'], `${where}.digest`), size: uint(o['size'], `${where}.size`) };
  if (o['annotations'] !== undefined) d.annotations = strings(o['annotations'], `${where}.annotations`);
  if (typeof o['artifactType'] === 'string') d.artifactType = o['artifactType'];
  return d;
}

/** A manifest that is ours: an OCI image manifest with our artifact and config types, the state layer first. */
export function parseManifest(bytes: Uint8Array, where: string): SnapshotManifest {
  const o = obj(parseJson(bytes, where), where);
  if (o['schemaVersion'] !== 2) throw new SnapshotStoreError(`${where}: schemaVersion ${JSON.stringify(o['schemaVersion'])}, expected 2`);
  if (o['mediaType'] !== MT_MANIFEST) throw new SnapshotStoreError(`${where}: mediaType ${JSON.stringify(o['mediaType'])}, expected ${MT_MANIFEST}`);
  if (o['artifactType'] !== ARTIFACT_TYPE) throw new SnapshotStoreError(`${where}: artifactType ${JSON.stringify(o['artifactType'])}: not a Firmament VM snapshot (expected ${ARTIFACT_TYPE})`);
  const config = parseDescriptor(o['config'], `${where}: config`);
  if (config.mediaType !== MT_CONFIG) throw new SnapshotStoreError(`${where}: config.mediaType ${JSON.stringify(config.mediaType)}, expected ${MT_CONFIG}`);
  if (config.size > MAX_CONFIG_BYTES) throw new SnapshotStoreError(`${where}: config.size ${config.size} exceeds ${MAX_CONFIG_BYTES}`);
  if (!Array.isArray(o['layers']) || o['layers'].length === 0) throw new SnapshotStoreError(`${where}: layers: expected a non-empty array`);
  const layers = o['layers'].map((l, i) => parseDescriptor(l, `${where}: layers[${i}]`));
  const seen = new Set<string>();
  layers.forEach((l, i) => {
    const lw = `${where}: layers[${i}]`;
    if (i === 0 && l.mediaType !== MT_STATE) throw new SnapshotStoreError(`${lw}.mediaType ${JSON.stringify(l.mediaType)}: the first layer must be the state blob (${MT_STATE})`);
    if (i > 0 && l.mediaType !== MT_CHUNK) throw new SnapshotStoreError(`${lw}.mediaType ${JSON.stringify(l.mediaType)}, expected ${MT_CHUNK}`);
    if (i === 0 && l.size > MAX_STATE_BYTES) throw new SnapshotStoreError(`${lw}.size ${l.size} exceeds ${MAX_STATE_BYTES}`);
    if (i > 0 && (l.size === 0 || l.size > CHUNK_SIZE)) throw new SnapshotStoreError(`${lw}.size ${l.size}: a memory chunk is 1..${CHUNK_SIZE} bytes`);
    if (seen.has(l.digest)) throw new SnapshotStoreError(`${lw}.digest ${l.digest} is listed twice`);
    seen.add(l.digest);
  });
  const m: SnapshotManifest = { schemaVersion: 2, mediaType: MT_MANIFEST, artifactType: ARTIFACT_TYPE, config, layers };
  if (o['annotations'] !== undefined) m.annotations = strings(o['annotations'], `${where}: annotations`);
  return m;
}

/** The config, checked against itself and against the manifest that names it. */
export function parseConfig(bytes: Uint8Array, where: string, manifest: SnapshotManifest): SnapshotConfig {
  const o = obj(parseJson(bytes, where), where);
  if (o['formatVersion'] !== CONFIG_FORMAT_VERSION) throw new SnapshotStoreError(`${where}: formatVersion ${JSON.stringify(o['formatVersion'])}: this build reads snapshot config version ${CONFIG_FORMAT_VERSION}`);
  const chunkSize = uint(o['chunkSize'], `${where}: chunkSize`);
  if (chunkSize !== CHUNK_SIZE) throw new SnapshotStoreError(`${where}: chunkSize ${chunkSize}: this build uses ${CHUNK_SIZE}-byte chunks`);
  if (typeof o['created'] !== 'string') throw new SnapshotStoreError(`${where}: created: expected a string`);
  const meta = strings(o['meta'], `${where}: meta`);
  const st = obj(o['state'], `${where}: state`);
  const state = { digest: digest(st['digest'], `${where}: state.digest`), size: uint(st['size'], `${where}: state.size`) };
  const stateLayer = manifest.layers[0]!;
  if (stateLayer.digest !== state.digest || stateLayer.size !== state.size) throw new SnapshotStoreError(`${where}: state ${state.digest} (${state.size} bytes) is not the manifest's state layer ${stateLayer.digest} (${stateLayer.size} bytes)`);
  const mem = obj(o['memory'], `${where}: memory`);
  if (!Array.isArray(mem['ranges'])) throw new SnapshotStoreError(`${where}: memory.ranges: expected an array`);
  const ranges = mem['ranges'].map((r, i) => {
    const ro = obj(r, `${where}: memory.ranges[${i}]`);
    return { gpa: uint(ro['gpa'], `${where}: memory.ranges[${i}].gpa`), length: uint(ro['length'], `${where}: memory.ranges[${i}].length`) };
  });
  checkRanges(ranges, `${where}: memory.ranges`);
  if (!Array.isArray(mem['chunks'])) throw new SnapshotStoreError(`${where}: memory.chunks: expected an array`);
  const layerSize = new Map(manifest.layers.slice(1).map((l) => [l.digest, l.size]));
  const used = new Set<string>();
  let prevEnd = -1;
  const chunks = mem['chunks'].map((c, i) => {
    const cw = `${where}: memory.chunks[${i}]`;
    const co = obj(c, cw);
    const ch: StoredChunk = { gpa: uint(co['gpa'], `${cw}.gpa`), length: uint(co['length'], `${cw}.length`), digest: digest(co['digest'], `${cw}.digest`) };
    const expected = chunkAt(ranges, ch.gpa);
    if (!expected || expected.length !== ch.length) throw new SnapshotStoreError(`${cw}: GPA ${hex(ch.gpa)} length ${ch.length} is not a chunk of memory.ranges`);
    if (ch.gpa < prevEnd) throw new SnapshotStoreError(`${cw}: GPA ${hex(ch.gpa)} is out of order or repeated`);
    prevEnd = ch.gpa + ch.length;
    const size = layerSize.get(ch.digest);
    if (size === undefined) throw new SnapshotStoreError(`${cw}: digest ${ch.digest} is not a layer of the manifest`);
    if (size !== ch.length) throw new SnapshotStoreError(`${cw}: ${ch.length} bytes, but its layer ${ch.digest} has ${size}`);
    used.add(ch.digest);
    return ch;
  });
  for (const l of manifest.layers.slice(1)) if (!used.has(l.digest)) throw new SnapshotStoreError(`${where}: layer ${l.digest} is not used by any memory chunk`);
  return { formatVersion: CONFIG_FORMAT_VERSION, chunkSize, created: o['created'], meta, state, memory: { ranges, chunks } };
}

/** Ranges must be page aligned, sorted by GPA and must not overlap. */
export function checkRanges(ranges: { gpa: number; length: number }[], where: string): void {
  let end = 0;
  ranges.forEach((r, i) => {
    if (r.gpa % PAGE_SIZE !== 0 || r.length % PAGE_SIZE !== 0) throw new SnapshotStoreError(`${where}[${i}]: GPA ${hex(r.gpa)} length ${hex(r.length)} is not ${PAGE_SIZE}-byte page aligned`);
    if (r.length === 0) throw new SnapshotStoreError(`${where}[${i}]: GPA ${hex(r.gpa)} is empty`);
    if (!Number.isSafeInteger(r.gpa + r.length)) throw new SnapshotStoreError(`${where}[${i}]: GPA ${hex(r.gpa)} + ${hex(r.length)} is beyond 2^53`);
    if (i > 0 && r.gpa < end) throw new SnapshotStoreError(`${where}[${i}]: GPA ${hex(r.gpa)} overlaps or precedes the range before it (ends at ${hex(end)})`);
    end = r.gpa + r.length;
  });
}

/** Chunk boundaries are GPA multiples of CHUNK_SIZE, clipped to the range, so two layouts line up. */
export function* chunksOf(ranges: { gpa: number; length: number }[]): Generator<{ gpa: number; length: number; range: number; offset: number }> {
  for (const [i, r] of ranges.entries()) {
    let gpa = r.gpa;
    const end = r.gpa + r.length;
    while (gpa < end) {
      const next = Math.min(end, (Math.floor(gpa / CHUNK_SIZE) + 1) * CHUNK_SIZE);
      yield { gpa, length: next - gpa, range: i, offset: gpa - r.gpa };
      gpa = next;
    }
  }
}

function chunkAt(ranges: { gpa: number; length: number }[], gpa: number): { length: number } | null {
  const r = ranges.find((x) => gpa >= x.gpa && gpa < x.gpa + x.length);
  if (!r) return null;
  if (gpa !== r.gpa && gpa % CHUNK_SIZE !== 0) return null;
  return { length: Math.min(r.gpa + r.length, (Math.floor(gpa / CHUNK_SIZE) + 1) * CHUNK_SIZE) - gpa };
}

/** Index of the chunk holding a GPA: what a dirty log reports. */
export function chunkIndexOf(gpa: number): number {
  return Math.floor(gpa / CHUNK_SIZE);
}
