/**
 * Snapshot byte format v2: one JSON tree plus raw byte sections, so 64 MiB of
 * RAM is not base64 text, and every part carries a CRC-32 so a flipped or
 * missing byte is refused before any of it reaches a machine.
 *
 * Layout (little endian, docs/snapshots.md):
 *   0   8  magic "FMSNAP02"
 *   8   4  u32 format version (2)
 *   12  4  u32 section count N (>= 1; section 0 is the JSON tree)
 *   16  4  u32 CRC-32 of bytes 0..15
 *   20     N sections, each: u64 length, u32 CRC-32 of (the 8 length bytes + data), data
 * Nothing may follow the last section. Bytes in the tree are written as
 * {"$bytes": i}, i >= 1 the section that holds them.
 */
import { crc32 } from 'node:zlib';
import type { StateRecord, StateValue } from '../state.js';

export const SNAPSHOT_MAGIC = 'FMSNAP02';
export const SNAPSHOT_FORMAT_VERSION = 2;
/** Versions this build reads; v1 (FMSNAP01) files get an "old format" error. */
export const READABLE_FORMAT_VERSIONS: readonly number[] = [2];

const MAGIC_PREFIX = 'FMSNAP';
const HEADER_BYTES = 20;
const SECTION_HEADER_BYTES = 12;
/** The tree is data, not code: deeper nesting than this is a corrupt or hostile file, not a VM. */
const MAX_DEPTH = 256;
const BYTES_KEY = '$bytes';

export class SnapshotFormatError extends Error {
  constructor(
    readonly offset: number,
    readonly field: string,
    message: string,
  ) {
    super(`snapshot: offset ${offset}: ${field}: ${message}`);
    this.name = 'SnapshotFormatError';
  }
}

const readable = () => `this build reads format version ${READABLE_FORMAT_VERSIONS.join(', ')}`;

function sectionCrc(lengthBytes: Uint8Array, data: Uint8Array): number {
  return crc32(data, crc32(lengthBytes));
}

export function encodeSnapshot(state: StateRecord): Uint8Array {
  const sections: Uint8Array[] = [];
  const replace = (v: StateValue, path: string, depth: number): unknown => {
    if (depth > MAX_DEPTH) throw new SnapshotFormatError(0, path, `nested deeper than ${MAX_DEPTH} levels`);
    if (v instanceof Uint8Array) {
      sections.push(v);
      return { [BYTES_KEY]: sections.length };
    }
    // JSON would silently turn these into null: refuse instead of saving a wrong answer.
    if (typeof v === 'number' && !Number.isFinite(v)) throw new SnapshotFormatError(0, path, `${v} cannot be saved (not a finite number)`);
    if (v === undefined) throw new SnapshotFormatError(0, path, 'undefined cannot be saved');
    if (Array.isArray(v)) return v.map((x, i) => replace(x, `${path}[${i}]`, depth + 1));
    if (v !== null && typeof v === 'object') {
      if (BYTES_KEY in v) throw new SnapshotFormatError(0, `${path}.${BYTES_KEY}`, `the key '${BYTES_KEY}' is reserved for byte sections`);
      return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, replace(x, `${path}.${k}`, depth + 1)]));
    }
    return v;
  };
  const json = new TextEncoder().encode(JSON.stringify(replace(state, '$', 0)));
  const all = [json, ...sections];
  const total = HEADER_BYTES + all.reduce((n, s) => n + SECTION_HEADER_BYTES + s.length, 0);
  const out = new Uint8Array(total);
  const dv = new DataView(out.buffer);
  out.set(new TextEncoder().encode(SNAPSHOT_MAGIC), 0);
  dv.setUint32(8, SNAPSHOT_FORMAT_VERSION, true);
  dv.setUint32(12, all.length, true);
  dv.setUint32(16, crc32(out.subarray(0, 16)), true);
  let o = HEADER_BYTES;
  for (const s of all) {
    dv.setBigUint64(o, BigInt(s.length), true);
    out.set(s, o + SECTION_HEADER_BYTES);
    dv.setUint32(o + 8, sectionCrc(out.subarray(o, o + 8), s), true);
    o += SECTION_HEADER_BYTES + s.length;
  }
  return out;
}

const sectionName = (i: number) => (i === 0 ? 'section 0 (JSON tree)' : `section ${i}`);

export function decodeSnapshot(bytes: Uint8Array): StateRecord {
  const magicLen = Math.min(8, bytes.length);
  const magic = new TextDecoder('latin1').decode(bytes.subarray(0, magicLen));
  if (!magic.startsWith(MAGIC_PREFIX.slice(0, magicLen)) || (magicLen === 8 && !/^FMSNAP\d\d$/.test(magic))) {
    throw new SnapshotFormatError(0, 'magic', `expected ${SNAPSHOT_MAGIC}, found ${JSON.stringify(magic)}: not a Firmament snapshot`);
  }
  // The version in the magic is judged first: a v1 file is refused as old, whatever its length.
  if (magicLen === 8) {
    const magicVersion = Number(magic.slice(6));
    if (magicVersion === 1) throw new SnapshotFormatError(0, 'magic', `FMSNAP01 is the old format version 1 (no CRCs); ${readable()}: save the snapshot again with this build`);
    if (!READABLE_FORMAT_VERSIONS.includes(magicVersion)) throw new SnapshotFormatError(0, 'magic', `${magic} is unknown format version ${magicVersion}; ${readable()}`);
  }
  if (bytes.length < HEADER_BYTES) throw new SnapshotFormatError(bytes.length, 'header', `file is ${bytes.length} bytes, shorter than the ${HEADER_BYTES}-byte header (truncated)`);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const magicVersion = Number(magic.slice(6));
  const headerCrc = dv.getUint32(16, true);
  const actualHeaderCrc = crc32(bytes.subarray(0, 16));
  if (headerCrc !== actualHeaderCrc) throw new SnapshotFormatError(16, 'header CRC', `stored 0x${hex32(headerCrc)}, computed 0x${hex32(actualHeaderCrc)} over bytes 0..15 (corrupt header)`);
  const version = dv.getUint32(8, true);
  if (version !== magicVersion) throw new SnapshotFormatError(8, 'format version', `${version} does not match the magic ${magic}; ${readable()}`);
  const count = dv.getUint32(12, true);
  if (count < 1) throw new SnapshotFormatError(12, 'section count', 'is 0; at least the JSON tree (section 0) is required');

  const sections: Uint8Array[] = [];
  let o = HEADER_BYTES;
  for (let i = 0; i < count; i++) {
    const name = sectionName(i);
    if (o + SECTION_HEADER_BYTES > bytes.length) throw new SnapshotFormatError(o, `${name} header`, `needs ${SECTION_HEADER_BYTES} bytes, ${bytes.length - o} remain (truncated: ${count} sections declared, ${i} present)`);
    const len = dv.getBigUint64(o, true);
    const have = bytes.length - o - SECTION_HEADER_BYTES;
    if (len > BigInt(have)) throw new SnapshotFormatError(o, `${name} length`, `${len} bytes declared, ${have} present (truncated)`);
    const n = Number(len);
    const data = bytes.subarray(o + SECTION_HEADER_BYTES, o + SECTION_HEADER_BYTES + n);
    const stored = dv.getUint32(o + 8, true);
    const actual = sectionCrc(bytes.subarray(o, o + 8), data);
    if (stored !== actual) throw new SnapshotFormatError(o + 8, `${name} CRC`, `CRC mismatch in ${name}: stored 0x${hex32(stored)}, computed 0x${hex32(actual)} over ${n} bytes (corrupt)`);
    sections.push(data);
    o += SECTION_HEADER_BYTES + n;
  }
  if (o !== bytes.length) throw new SnapshotFormatError(o, 'end', `${bytes.length - o} bytes follow the last of ${count} sections`);

  const jsonOffset = HEADER_BYTES + SECTION_HEADER_BYTES;
  let tree: unknown;
  try {
    tree = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(sections[0]));
  } catch (e) {
    throw new SnapshotFormatError(jsonOffset, 'section 0 (JSON tree)', (e as Error).message);
  }
  const used = new Set<number>();
  const revive = (v: unknown, path: string, depth: number): StateValue => {
    if (depth > MAX_DEPTH) throw new SnapshotFormatError(jsonOffset, path, `nested deeper than ${MAX_DEPTH} levels`);
    if (Array.isArray(v)) return v.map((x, i) => revive(x, `${path}[${i}]`, depth + 1));
    if (v !== null && typeof v === 'object') {
      const rec = v as Record<string, unknown>;
      if (BYTES_KEY in rec) {
        const idx = rec[BYTES_KEY];
        if (Object.keys(rec).length !== 1 || typeof idx !== 'number' || !Number.isInteger(idx) || idx < 1) throw new SnapshotFormatError(jsonOffset, path, `malformed byte reference ${JSON.stringify(rec).slice(0, 80)}`);
        const s = sections[idx];
        if (!s) throw new SnapshotFormatError(jsonOffset, path, `refers to byte section ${idx}, but the file has sections 1..${count - 1}`);
        if (used.has(idx)) throw new SnapshotFormatError(jsonOffset, path, `byte section ${idx} is referenced twice`);
        used.add(idx);
        return s.slice(); // a copy: the caller may keep it after the file buffer is reused
      }
      return Object.fromEntries(Object.entries(rec).map(([k, x]) => [k, revive(x, `${path}.${k}`, depth + 1)]));
    }
    return v as StateValue;
  };
  const root = revive(tree, '$', 0);
  if (root === null || typeof root !== 'object' || Array.isArray(root) || root instanceof Uint8Array) throw new SnapshotFormatError(jsonOffset, '$', 'root is not a record');
  if (used.size !== count - 1) {
    const unused = Array.from({ length: count - 1 }, (_, i) => i + 1).filter((i) => !used.has(i));
    throw new SnapshotFormatError(jsonOffset, '$', `byte section${unused.length > 1 ? 's' : ''} ${unused.slice(0, 8).join(', ')} not referenced by the tree`);
  }
  return root;
}

function hex32(n: number): string {
  return n.toString(16).padStart(8, '0');
}
