/**
 * The live-migration wire format (docs/migration.md): a versioned preamble,
 * then frames, each with a CRC-32 over its header and payload. The same
 * framing runs both ways on one TCP connection: the source sends HELLO,
 * PAGES, ROUND, STATE, END and GO; the destination answers ACCEPT or REFUSE,
 * READY and RUNNING. Decoding is incremental (TCP delivers any split) and
 * every refusal names the frame, the stream offset and the field.
 */
import { crc32 } from 'node:zlib';

export const MIGRATION_MAGIC = 'FMMIGRAT';
export const MIGRATION_VERSION = 1;
export const PREAMBLE_BYTES = 16;
export const FRAME_HEADER_BYTES = 16;
/** The largest payload a frame may declare: a PAGES frame of 256 pages is about 1 MiB; a state record of 64 vCPUs stays far below. */
export const MAX_FRAME_PAYLOAD = 16 * 1024 * 1024;
export const PAGE_SIZE = 4096;
/** Pages per PAGES frame written by the source. */
export const PAGES_PER_FRAME = 256;

export const FrameType = {
  HELLO: 0x01,
  PAGES: 0x02,
  ROUND: 0x03,
  STATE: 0x04,
  END: 0x05,
  ABORT: 0x06,
  GO: 0x07,
  /** A state record taken while the VM still runs (after round 1), sent only when ACCEPT said `rehearse`: the destination loads it once so the real STATE finds its code warm. */
  REHEARSE: 0x08,
  ACCEPT: 0x81,
  REFUSE: 0x82,
  READY: 0x83,
  RUNNING: 0x84,
} as const;
export type FrameTypeCode = (typeof FrameType)[keyof typeof FrameType];
const TYPE_NAMES = new Map<number, string>(Object.entries(FrameType).map(([k, v]) => [v, k]));
export const frameTypeName = (t: number): string => TYPE_NAMES.get(t) ?? `0x${t.toString(16)}`;

export interface Frame {
  type: FrameTypeCode;
  /** Frames are numbered from 0 in each direction; a gap or repeat is refused. */
  seq: number;
  payload: Uint8Array;
  /** Stream offset of the frame's header (for errors further up). */
  offset: number;
}

/** A page record in a PAGES frame: its bytes, or null for a zero page (sent as a flag, no bytes). */
export interface PageRecord {
  pfn: number;
  bytes: Uint8Array | null;
}

export class MigrationStreamError extends Error {
  constructor(
    readonly where: string,
    readonly offset: number,
    readonly field: string,
    detail: string,
  ) {
    super(`migration stream: ${where} at offset ${offset}: field '${field}': ${detail}`);
    this.name = 'MigrationStreamError';
  }
}

const crcOf = (...parts: Uint8Array[]): number => parts.reduce((c, p) => crc32(p, c), 0) >>> 0;

export function encodePreamble(version = MIGRATION_VERSION): Uint8Array {
  const b = new Uint8Array(PREAMBLE_BYTES);
  b.set(new TextEncoder().encode(MIGRATION_MAGIC), 0);
  const dv = new DataView(b.buffer);
  dv.setUint32(8, version, true);
  dv.setUint32(12, crcOf(b.subarray(0, 12)), true);
  return b;
}

export function encodeFrame(type: FrameTypeCode, seq: number, payload: Uint8Array = new Uint8Array(0)): Uint8Array {
  if (payload.length > MAX_FRAME_PAYLOAD) throw new RangeError(`${frameTypeName(type)} frame of ${payload.length} bytes exceeds ${MAX_FRAME_PAYLOAD}`);
  const b = new Uint8Array(FRAME_HEADER_BYTES + payload.length);
  const dv = new DataView(b.buffer);
  dv.setUint8(0, type);
  dv.setUint32(4, seq >>> 0, true);
  dv.setUint32(8, payload.length, true);
  b.set(payload, FRAME_HEADER_BYTES);
  dv.setUint32(12, crcOf(b.subarray(0, 12), payload), true);
  return b;
}

export function encodeJson(value: unknown): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(value));
}

/** A PAGES payload: u32 round, u32 count, then per page u32 pfn, u8 kind (0 data, 1 zero) and 4096 bytes for data. */
export function encodePages(round: number, pages: readonly PageRecord[]): Uint8Array {
  const data = pages.filter((p) => p.bytes !== null).length;
  const b = new Uint8Array(8 + pages.length * 5 + data * PAGE_SIZE);
  const dv = new DataView(b.buffer);
  dv.setUint32(0, round, true);
  dv.setUint32(4, pages.length, true);
  let o = 8;
  for (const p of pages) {
    dv.setUint32(o, p.pfn, true);
    dv.setUint8(o + 4, p.bytes ? 0 : 1);
    o += 5;
    if (p.bytes) {
      if (p.bytes.length !== PAGE_SIZE) throw new RangeError(`page ${p.pfn}: ${p.bytes.length} bytes, expected ${PAGE_SIZE}`);
      b.set(p.bytes, o);
      o += PAGE_SIZE;
    }
  }
  return b;
}

const where = (f: Frame): string => `frame ${f.seq} (${frameTypeName(f.type)})`;
const payloadOffset = (f: Frame, off: number): number => f.offset + FRAME_HEADER_BYTES + off;

/** Decodes a PAGES payload; page bytes are views into the payload. */
export function decodePages(f: Frame, maxPfn: number): { round: number; pages: PageRecord[] } {
  const p = f.payload;
  const fail = (off: number, field: string, detail: string): never => {
    throw new MigrationStreamError(where(f), payloadOffset(f, off), field, detail);
  };
  if (p.length < 8) fail(p.length, 'count', `payload of ${p.length} bytes is shorter than its 8-byte header`);
  const dv = new DataView(p.buffer, p.byteOffset, p.byteLength);
  const round = dv.getUint32(0, true);
  const count = dv.getUint32(4, true);
  if (count > PAGES_PER_FRAME * 16) fail(4, 'count', `${count} pages in one frame (at most ${PAGES_PER_FRAME * 16})`);
  const pages: PageRecord[] = [];
  let o = 8;
  for (let i = 0; i < count; i++) {
    if (o + 5 > p.length) fail(o, `pages[${i}].pfn`, `record ${i} of ${count} is truncated`);
    const pfn = dv.getUint32(o, true);
    const kind = dv.getUint8(o + 4);
    if (pfn >= maxPfn) fail(o, `pages[${i}].pfn`, `page 0x${pfn.toString(16)} (GPA 0x${(pfn * PAGE_SIZE).toString(16)}) is beyond guest RAM of ${maxPfn} pages`);
    if (kind > 1) fail(o + 4, `pages[${i}].kind`, `unknown page kind ${kind} (0 data, 1 zero)`);
    o += 5;
    if (kind === 0) {
      if (o + PAGE_SIZE > p.length) fail(o, `pages[${i}].bytes`, `page 0x${pfn.toString(16)} has ${p.length - o} of ${PAGE_SIZE} bytes`);
      pages.push({ pfn, bytes: p.subarray(o, o + PAGE_SIZE) });
      o += PAGE_SIZE;
    } else pages.push({ pfn, bytes: null });
  }
  if (o !== p.length) fail(o, 'payload', `${p.length - o} bytes after the last of ${count} page records`);
  return { round, pages };
}

/** A JSON frame's payload as an object; `fields` must be present with the given typeof. */
export function decodeJson<T extends object>(f: Frame, fields: Record<string, 'number' | 'string' | 'boolean' | 'object'>): T {
  let v: unknown;
  try {
    v = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(f.payload));
  } catch (e) {
    throw new MigrationStreamError(where(f), payloadOffset(f, 0), 'payload', `not UTF-8 JSON (${(e as Error).message})`);
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new MigrationStreamError(where(f), payloadOffset(f, 0), 'payload', 'not a JSON object');
  for (const [k, t] of Object.entries(fields)) {
    const got = (v as Record<string, unknown>)[k];
    if (typeof got !== t || got === null) throw new MigrationStreamError(where(f), payloadOffset(f, 0), k, `expected a ${t}, got ${got === null ? 'null' : typeof got}`);
  }
  return v as T;
}

/**
 * Incremental decoder for one direction of the stream: feed it whatever TCP
 * delivered, get whole frames back. The first error poisons it (a stream is
 * not resynchronised after a bad frame).
 */
export class FrameDecoder {
  private buf = new Uint8Array(0);
  /** Chunks received since the last parse, and how many bytes the next parse step needs (no quadratic re-joining of a big frame). */
  private chunks: Uint8Array[] = [];
  private pendingBytes = 0;
  private need = PREAMBLE_BYTES;
  /** Stream offset of buf[0]. */
  private offset = 0;
  private preambleSeen = false;
  private nextSeq = 0;
  private failed: MigrationStreamError | null = null;

  constructor(private readonly direction: string) {}

  /** Bytes consumed so far (preamble and whole frames). */
  get position(): number {
    return this.offset;
  }

  push(chunk: Uint8Array): Frame[] {
    if (this.failed) throw this.failed;
    const out: Frame[] = [];
    this.chunks.push(chunk);
    this.pendingBytes += chunk.length;
    if (this.buf.length + this.pendingBytes < this.need) return out;
    const joined = new Uint8Array(this.buf.length + this.pendingBytes);
    joined.set(this.buf);
    let at = this.buf.length;
    for (const c of this.chunks) {
      joined.set(c, at);
      at += c.length;
    }
    this.buf = joined;
    this.chunks = [];
    this.pendingBytes = 0;
    try {
      let pos = 0;
      if (!this.preambleSeen) {
        if (this.buf.length < PREAMBLE_BYTES) return out;
        this.checkPreamble(this.buf.subarray(0, PREAMBLE_BYTES));
        this.preambleSeen = true;
        pos = PREAMBLE_BYTES;
      }
      while (this.buf.length - pos >= FRAME_HEADER_BYTES) {
        const at = this.offset + pos;
        const dv = new DataView(this.buf.buffer, this.buf.byteOffset + pos, FRAME_HEADER_BYTES);
        const type = dv.getUint8(0);
        const seq = dv.getUint32(4, true);
        const length = dv.getUint32(8, true);
        const crc = dv.getUint32(12, true);
        const name = `${this.direction} frame ${seq} (${frameTypeName(type)})`;
        if (!TYPE_NAMES.has(type)) throw new MigrationStreamError(`${this.direction} frame ${this.nextSeq}`, at, 'type', `unknown frame type 0x${type.toString(16)}`);
        if (dv.getUint8(1) !== 0 || dv.getUint16(2, true) !== 0) throw new MigrationStreamError(name, at + 1, 'reserved', 'reserved header bytes are not zero');
        if (length > MAX_FRAME_PAYLOAD) throw new MigrationStreamError(name, at + 8, 'length', `${length} bytes exceeds the ${MAX_FRAME_PAYLOAD}-byte limit`);
        if (this.buf.length - pos - FRAME_HEADER_BYTES < length) {
          this.need = FRAME_HEADER_BYTES + length;
          break;
        }
        const header = this.buf.subarray(pos, pos + 12);
        const payload = this.buf.subarray(pos + FRAME_HEADER_BYTES, pos + FRAME_HEADER_BYTES + length);
        const want = crcOf(header, payload);
        if (want !== crc) throw new MigrationStreamError(name, at + 12, 'crc', `CRC-32 0x${crc.toString(16).padStart(8, '0')} does not match the frame's 0x${want.toString(16).padStart(8, '0')} (corrupt)`);
        if (seq !== this.nextSeq) throw new MigrationStreamError(name, at + 4, 'seq', `expected frame ${this.nextSeq} (a frame was lost or repeated)`);
        this.nextSeq++;
        out.push({ type: type as FrameTypeCode, seq, payload: payload.slice(), offset: at });
        pos += FRAME_HEADER_BYTES + length;
      }
      this.buf = this.buf.slice(pos);
      this.offset += pos;
      if (this.buf.length < FRAME_HEADER_BYTES) this.need = FRAME_HEADER_BYTES;
      return out;
    } catch (e) {
      if (e instanceof MigrationStreamError) this.failed = e;
      throw e;
    }
  }

  /** The peer closed its side: anything left over is a truncated frame. */
  end(): void {
    if (this.failed) throw this.failed;
    if (this.pendingBytes > 0) {
      this.need = 0;
      this.push(new Uint8Array(0));
    }
    if (!this.preambleSeen) throw (this.failed = new MigrationStreamError(`${this.direction} preamble`, this.offset, 'magic', `stream ended after ${this.buf.length} of ${PREAMBLE_BYTES} preamble bytes (truncated)`));
    if (this.buf.length > 0) {
      const declared = this.buf.length >= 12 ? new DataView(this.buf.buffer, this.buf.byteOffset).getUint32(8, true) : null;
      throw (this.failed = new MigrationStreamError(`${this.direction} frame ${this.nextSeq}`, this.offset, declared === null ? 'header' : 'payload', `stream ended inside the frame: ${this.buf.length} bytes of ${declared === null ? `a ${FRAME_HEADER_BYTES}-byte header` : `${FRAME_HEADER_BYTES + declared}`} (truncated)`));
    }
  }

  private checkPreamble(b: Uint8Array): void {
    const magic = new TextDecoder('latin1').decode(b.subarray(0, 8));
    const dv = new DataView(b.buffer, b.byteOffset, PREAMBLE_BYTES);
    if (magic !== MIGRATION_MAGIC) throw new MigrationStreamError(`${this.direction} preamble`, 0, 'magic', `'${magic.replace(/[^\x20-\x7e]/g, '.')}' is not a Firmament migration stream (${MIGRATION_MAGIC})`);
    const want = crcOf(b.subarray(0, 12));
    if (dv.getUint32(12, true) !== want) throw new MigrationStreamError(`${this.direction} preamble`, 12, 'crc', 'preamble CRC-32 does not match (corrupt)');
    const version = dv.getUint32(8, true);
    if (version !== MIGRATION_VERSION) throw new MigrationStreamError(`${this.direction} preamble`, 8, 'version', `stream version ${version}; this build speaks version ${MIGRATION_VERSION}`);
  }
}

/**
 * Frame writer for one direction: numbers frames and prepends the preamble to
 * the first one. What it returns goes onto the socket as is.
 */
export class FrameEncoder {
  private seq = 0;
  private started = false;

  next(type: FrameTypeCode, payload?: Uint8Array): Uint8Array {
    const f = encodeFrame(type, this.seq++, payload);
    if (this.started) return f;
    this.started = true;
    const out = new Uint8Array(PREAMBLE_BYTES + f.length);
    out.set(encodePreamble());
    out.set(f, PREAMBLE_BYTES);
    return out;
  }
}
