/**
 * A digest of guest memory that both ends keep up to date page by page, so
 * checking it at the switch-over costs nothing in downtime: the sum (eight
 * 32-bit lanes, each mod 2^32) of SHA-256(GPA || page) over every non-zero
 * page. A page written again replaces its old term. Zero pages contribute
 * nothing, so memory never sent (all zero on both sides) needs no work.
 */
import { createHash } from 'node:crypto';

const LANES = 8;

export function isZeroPage(bytes: Uint8Array): boolean {
  if (bytes.byteOffset % 4 !== 0 || bytes.byteLength % 4 !== 0) {
    for (const b of bytes) if (b !== 0) return false;
    return true;
  }
  const words = new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength >> 2);
  for (let i = 0; i < words.length; i++) if (words[i] !== 0) return false;
  return true;
}

export function pageHash(pfn: number, bytes: Uint8Array): Uint32Array {
  const h = createHash('sha256');
  const gpa = Buffer.alloc(8);
  gpa.writeBigUInt64LE(BigInt(pfn) * 4096n);
  h.update(gpa);
  h.update(bytes);
  const d = h.digest();
  return new Uint32Array(d.buffer.slice(d.byteOffset, d.byteOffset + 32));
}

export class MemoryDigest {
  private readonly sum = new Uint32Array(LANES);
  /** The term of each non-zero page. */
  private readonly terms = new Map<number, Uint32Array>();

  /** The page's content is now `bytes` (null or all zero: a zero page). Returns false when it equals what the digest already holds. */
  set(pfn: number, bytes: Uint8Array | null): boolean {
    const old = this.terms.get(pfn);
    const zero = bytes === null || isZeroPage(bytes);
    if (zero) {
      if (!old) return false;
      this.add(old, -1);
      this.terms.delete(pfn);
      return true;
    }
    const t = pageHash(pfn, bytes);
    if (old && old.every((w, i) => w === t[i])) return false;
    if (old) this.add(old, -1);
    this.add(t, 1);
    this.terms.set(pfn, t);
    return true;
  }

  /** Whether `bytes` is what the digest holds for this page (an unchanged page). */
  holds(pfn: number, bytes: Uint8Array | null): boolean {
    const old = this.terms.get(pfn);
    if (bytes === null || isZeroPage(bytes)) return !old;
    if (!old) return false;
    const t = pageHash(pfn, bytes);
    return old.every((w, i) => w === t[i]);
  }

  get nonZeroPages(): number {
    return this.terms.size;
  }

  hex(): string {
    return Buffer.from(this.sum.buffer.slice(0)).toString('hex');
  }

  private add(t: Uint32Array, sign: 1 | -1): void {
    for (let i = 0; i < LANES; i++) this.sum[i] = (this.sum[i]! + sign * t[i]!) >>> 0;
  }
}
