/**
 * Incremental restore: bring a VM's memory to a stored snapshot by writing
 * only the chunks that differ from what the VM holds now. What it holds is
 * given as live memory (hashed here), a chunk table, another snapshot, or a
 * base snapshot plus the chunk indices a dirty log reports since it.
 */
import type { StateRecord } from '../../machine/state.js';
import { hashMemory, type ChunkEntry } from './chunks.js';
import { SnapshotStoreError } from './errors.js';
import { CHUNK_SIZE, chunkIndexOf, hex, type MemoryRange } from './format.js';
import type { SnapshotStore } from './store.js';

export type CurrentMemory =
  | { memory: MemoryRange[] }
  | { chunks: ChunkEntry[] }
  | { snapshot: string }
  /** The VM's memory was `base` (e.g. the snapshot it was restored from) except the chunks in dirtyChunks (indices gpa / CHUNK_SIZE). */
  | { base: string; dirtyChunks: Iterable<number> };

export interface ChunkWrite {
  gpa: number;
  /** The chunk's bytes (zero-filled for an all-zero chunk), checked against its digest. */
  bytes: Uint8Array;
  zero: boolean;
}

export interface IncrementalRestorePlan {
  target: string;
  /** The target's state record, CRCs checked. */
  state: StateRecord;
  /** Exactly the chunks to write into guest memory, in GPA order. */
  writes: ChunkWrite[];
  /** Bytes written by this plan, and by a full restore of the target's memory. */
  bytesMoved: number;
  fullBytes: number;
  chunksMoved: number;
  chunksTotal: number;
}

export async function planIncrementalRestore(store: SnapshotStore, target: string, current: CurrentMemory): Promise<IncrementalRestorePlan> {
  const want = await store.chunkTable(target);
  const have = await currentTable(store, current);
  const layout = (t: { gpa: number; length: number }[]) => t.map((c) => `${c.gpa}+${c.length}`).join(',');
  if (layout(want) !== layout(have)) {
    throw new SnapshotStoreError(`incremental restore of '${target}': the VM's memory layout differs from the snapshot's (${describeRanges(want)} vs ${describeRanges(have)}); a full restore is needed`);
  }
  const state = await store.loadState(target);
  const writes: ChunkWrite[] = [];
  for (const [i, c] of want.entries()) {
    const h = have[i]!;
    // undefined = unknown (dirty): always rewritten.
    if (h.digest !== undefined && h.digest === c.digest) continue;
    writes.push(c.digest === null ? { gpa: c.gpa, bytes: new Uint8Array(c.length), zero: true } : { gpa: c.gpa, bytes: await store.readChunk(c.digest), zero: false });
  }
  const bytesMoved = writes.reduce((n, w) => n + w.bytes.length, 0);
  return { target, state, writes, bytesMoved, fullBytes: want.reduce((n, c) => n + c.length, 0), chunksMoved: writes.length, chunksTotal: want.length };
}

type KnownOrDirty = Omit<ChunkEntry, 'digest'> & { digest: string | null | undefined };

async function currentTable(store: SnapshotStore, current: CurrentMemory): Promise<KnownOrDirty[]> {
  if ('memory' in current) return hashMemory(current.memory);
  if ('chunks' in current) return current.chunks;
  if ('snapshot' in current) return store.chunkTable(current.snapshot);
  const base = await store.chunkTable(current.base);
  const byIndex = new Map(base.map((c, i) => [chunkIndexOf(c.gpa), i]));
  const table: KnownOrDirty[] = base.map((c) => ({ ...c }));
  for (const idx of current.dirtyChunks) {
    const i = byIndex.get(idx);
    if (!Number.isSafeInteger(idx) || i === undefined) throw new SnapshotStoreError(`incremental restore: dirty chunk ${idx} (GPA ${hex(idx * CHUNK_SIZE)}) is outside the memory of '${current.base}'`);
    table[i]!.digest = undefined;
  }
  return table;
}

function describeRanges(t: { gpa: number; length: number }[]): string {
  const out: { gpa: number; length: number }[] = [];
  for (const c of t) {
    const last = out.at(-1);
    if (last && last.gpa + last.length === c.gpa) last.length += c.length;
    else out.push({ gpa: c.gpa, length: c.length });
  }
  return out.map((r) => `${hex(r.gpa)}+${hex(r.length)}`).join(' ') || 'no memory';
}
