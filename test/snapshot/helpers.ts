/** Synthetic VMs and store surgery for the snapshot store tests. */
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll } from 'vitest';
import type { StateRecord } from '../../machine/state.js';
import type { MemoryRange, VmSnapshotData } from '../../vmm/snapshot/index.js';

export const KiB = 1024;
export const MiB = 1024 * 1024;

const temps: string[] = [];
// Registered while the importing test file is collected, so it runs after that file's tests.
afterAll(() => temps.splice(0).forEach((d) => rmSync(d, { recursive: true, force: true })));

/** A store path in a fresh temp folder (removed after the test file). */
export function tempStoreDir(): string {
  const d = mkdtempSync(path.join(tmpdir(), 'fm-snapstore-'));
  temps.push(d);
  return path.join(d, 'store');
}

/** Deterministic pseudo-random bytes (xorshift32): the same seed gives the same memory. */
export function noise(length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

/**
 * A small PC-like VM: 640 KiB low RAM (10 chunks, the last 64 KiB mostly zero) and 2 MiB at 1 MiB,
 * with code and data in a few places and the rest zero.
 */
export function syntheticVm(seed = 1): VmSnapshotData {
  const low = new Uint8Array(0xa0000);
  low.set(noise(0x1000, seed), 0x7000); // page tables
  low.set(noise(0x20000, seed + 1), 0x10000); // two chunks of data
  const high = new Uint8Array(2 * MiB);
  high.set(noise(0x30000, 99), 0); // kernel image, the same in every VM
  high.set(noise(0x800, seed + 2), 0x100000); // heap
  const state: StateRecord = { version: 1, cpu: { rip: 0x100000 + seed, cr3: 0x7000, msrs: new Uint8Array([1, 2, 3, seed & 0xff]) }, clock: { ns: 123456789 * seed } };
  return { state, memory: [{ gpa: 0, bytes: low }, { gpa: MiB, bytes: high }], meta: { guest: 'synthetic', seed: String(seed) } };
}

export function memoryEquals(a: MemoryRange[], b: MemoryRange[]): boolean {
  return a.length === b.length && a.every((r, i) => r.gpa === b[i]!.gpa && Buffer.from(r.bytes).equals(Buffer.from(b[i]!.bytes)));
}

export const blobFiles = (dir: string) => readdirSync(path.join(dir, 'blobs', 'sha256')).sort();

/** Everything in a store folder, with contents: "left as it was" compares two of these. */
export function storeFiles(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else out[path.relative(dir, p)] = createHash('sha256').update(readFileSync(p)).digest('hex');
    }
  };
  walk(dir);
  return out;
}

const sha = (b: Uint8Array) => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const blobPath = (dir: string, digest: string) => path.join(dir, 'blobs', 'sha256', digest.slice(7));

interface Manifest {
  config: { digest: string; size: number };
  layers: { mediaType: string; digest: string; size: number }[];
}

/**
 * Rewrites a stored snapshot with consistent digests all the way up (as a buggy or hostile writer
 * would), so the store's own checks below the digests are what must catch the change.
 */
export function rewriteSnapshot(
  dir: string,
  ref: string,
  edit: { state?: (b: Uint8Array) => Uint8Array; config?: (c: Record<string, unknown>) => void; configBytes?: (b: Buffer) => Buffer; manifestBytes?: (b: Buffer) => Buffer },
): void {
  const indexFile = path.join(dir, 'index.json');
  const index = JSON.parse(readFileSync(indexFile, 'utf8')) as { manifests: { digest: string; size: number; annotations: Record<string, string> }[] };
  const entry = index.manifests.find((m) => m.annotations['org.opencontainers.image.ref.name'] === ref)!;
  const manifest = JSON.parse(readFileSync(blobPath(dir, entry.digest), 'utf8')) as Manifest;
  const config = JSON.parse(readFileSync(blobPath(dir, manifest.config.digest), 'utf8')) as Record<string, unknown> & { state: { digest: string; size: number } };
  const put = (b: Uint8Array) => {
    writeFileSync(blobPath(dir, sha(b)), b);
    return { digest: sha(b), size: b.length };
  };
  if (edit.state) {
    const s = put(edit.state(readFileSync(blobPath(dir, manifest.layers[0]!.digest))));
    manifest.layers[0] = { ...manifest.layers[0]!, ...s };
    config.state = s;
  }
  edit.config?.(config);
  const configBytes = Buffer.from(JSON.stringify(config));
  manifest.config = { ...manifest.config, ...put(edit.configBytes ? edit.configBytes(configBytes) : configBytes) };
  const manifestBytes = Buffer.from(JSON.stringify(manifest));
  const m = put(edit.manifestBytes ? edit.manifestBytes(manifestBytes) : manifestBytes);
  entry.digest = m.digest;
  entry.size = m.size;
  writeFileSync(indexFile, JSON.stringify(index));
}

/** The blob file of the chunk stored for a GPA. */
export function chunkBlobPath(dir: string, ref: string, gpa: number): string {
  const index = JSON.parse(readFileSync(path.join(dir, 'index.json'), 'utf8')) as { manifests: { digest: string; annotations: Record<string, string> }[] };
  const entry = index.manifests.find((m) => m.annotations['org.opencontainers.image.ref.name'] === ref)!;
  const manifest = JSON.parse(readFileSync(blobPath(dir, entry.digest), 'utf8')) as Manifest;
  const config = JSON.parse(readFileSync(blobPath(dir, manifest.config.digest), 'utf8')) as { memory: { chunks: { gpa: number; digest: string }[] } };
  return blobPath(dir, config.memory.chunks.find((c) => c.gpa === gpa)!.digest);
}

export function stateBlobPath(dir: string, ref: string): string {
  const index = JSON.parse(readFileSync(path.join(dir, 'index.json'), 'utf8')) as { manifests: { digest: string; annotations: Record<string, string> }[] };
  const entry = index.manifests.find((m) => m.annotations['org.opencontainers.image.ref.name'] === ref)!;
  const manifest = JSON.parse(readFileSync(blobPath(dir, entry.digest), 'utf8')) as Manifest;
  return blobPath(dir, manifest.layers[0]!.digest);
}
