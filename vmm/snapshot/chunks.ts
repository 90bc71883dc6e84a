/** Cutting guest memory into chunks, hashing them, and putting them back. */
import { SnapshotStoreError } from './errors.js';
import { CHUNK_SIZE, checkRanges, chunksOf, type MemoryRange } from './format.js';
import { sha256 } from './layout.js';

/** One chunk of a memory image; digest null means all zero (never stored). */
export interface ChunkEntry {
  gpa: number;
  length: number;
  digest: string | null;
}

export interface ChunkView extends ChunkEntry {
  bytes: Uint8Array;
}

const ZERO = Buffer.alloc(CHUNK_SIZE);

export function isZero(b: Uint8Array): boolean {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).equals(ZERO.subarray(0, b.byteLength));
}

/** The ranges sorted by GPA and checked (page aligned, no overlap); `where` names the caller's input. */
export function memoryLayout(memory: MemoryRange[], where: string): { gpa: number; length: number }[] {
  memory.forEach((r, i) => {
    if (!(r.bytes instanceof Uint8Array)) throw new SnapshotStoreError(`${where}[${i}].bytes: expected a Uint8Array`);
    if (typeof r.gpa !== 'number') throw new SnapshotStoreError(`${where}[${i}].gpa: expected a number`);
  });
  const ranges = memory.map((r) => ({ gpa: r.gpa, length: r.bytes.length })).sort((a, b) => a.gpa - b.gpa);
  checkRanges(ranges, where);
  return ranges;
}

/** Every chunk of the memory, as a view (no copy), with its digest. */
export function cutMemory(memory: MemoryRange[], where = 'memory'): { ranges: { gpa: number; length: number }[]; chunks: ChunkView[] } {
  const sorted = [...memory].sort((a, b) => a.gpa - b.gpa);
  const ranges = memoryLayout(sorted, where);
  const chunks: ChunkView[] = [];
  for (const c of chunksOf(ranges)) {
    const bytes = sorted[c.range]!.bytes.subarray(c.offset, c.offset + c.length);
    chunks.push({ gpa: c.gpa, length: c.length, digest: isZero(bytes) ? null : sha256(bytes), bytes });
  }
  return { ranges, chunks };
}

/** The chunk table of a live memory image (what an incremental restore compares against). */
export function hashMemory(memory: MemoryRange[]): ChunkEntry[] {
  return cutMemory(memory).chunks.map(({ gpa, length, digest }) => ({ gpa, length, digest }));
}

/** Sums of chunk lengths; the table's ranges as [gpa, length) pairs. */
export function tableBytes(table: ChunkEntry[]): number {
  return table.reduce((n, c) => n + c.length, 0);
}
