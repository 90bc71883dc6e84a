/**
 * Snapshot byte format: one JSON tree plus raw byte sections, so 64 MiB of
 * RAM is not base64 text. Layout: magic "FMSNAP01", u32 JSON length, JSON,
 * then for each section: u32 length + bytes. Bytes in the tree are written
 * as {"$bytes": <section index>}.
 */
import type { StateRecord, StateValue } from '../state.js';

const MAGIC = 'FMSNAP01';

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

export function encodeSnapshot(state: StateRecord): Uint8Array {
  const sections: Uint8Array[] = [];
  const replace = (v: StateValue): unknown => {
    if (v instanceof Uint8Array) {
      sections.push(v);
      return { $bytes: sections.length - 1 };
    }
    if (Array.isArray(v)) return v.map(replace);
    if (v !== null && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, replace(x)]));
    return v;
  };
  const json = new TextEncoder().encode(JSON.stringify(replace(state)));
  const total = 8 + 4 + json.length + sections.reduce((n, s) => n + 4 + s.length, 0);
  const out = new Uint8Array(total);
  const dv = new DataView(out.buffer);
  out.set(new TextEncoder().encode(MAGIC), 0);
  dv.setUint32(8, json.length, true);
  out.set(json, 12);
  let o = 12 + json.length;
  for (const s of sections) {
    dv.setUint32(o, s.length, true);
    out.set(s, o + 4);
    o += 4 + s.length;
  }
  return out;
}

export function decodeSnapshot(bytes: Uint8Array): StateRecord {
  if (bytes.length < 12) throw new SnapshotFormatError(0, 'header', `file is ${bytes.length} bytes, shorter than the 12-byte header`);
  const magic = new TextDecoder().decode(bytes.subarray(0, 8));
  if (magic !== MAGIC) throw new SnapshotFormatError(0, 'magic', `expected ${MAGIC}, found ${JSON.stringify(magic)}`);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const jsonLen = dv.getUint32(8, true);
  if (12 + jsonLen > bytes.length) throw new SnapshotFormatError(8, 'json length', `${jsonLen} bytes of JSON but only ${bytes.length - 12} remain (truncated)`);
  let tree: unknown;
  try {
    tree = JSON.parse(new TextDecoder().decode(bytes.subarray(12, 12 + jsonLen)));
  } catch (e) {
    throw new SnapshotFormatError(12, 'json', (e as Error).message);
  }
  const sections: Uint8Array[] = [];
  let o = 12 + jsonLen;
  while (o < bytes.length) {
    if (o + 4 > bytes.length) throw new SnapshotFormatError(o, `section ${sections.length} length`, 'truncated');
    const len = dv.getUint32(o, true);
    if (o + 4 + len > bytes.length) throw new SnapshotFormatError(o, `section ${sections.length}`, `${len} bytes declared, ${bytes.length - o - 4} present (truncated)`);
    sections.push(bytes.slice(o + 4, o + 4 + len));
    o += 4 + len;
  }
  const revive = (v: unknown, path: string): StateValue => {
    if (Array.isArray(v)) return v.map((x, i) => revive(x, `${path}[${i}]`));
    if (v !== null && typeof v === 'object') {
      const rec = v as Record<string, unknown>;
      if (typeof rec['$bytes'] === 'number' && Object.keys(rec).length === 1) {
        const s = sections[rec['$bytes']];
        if (!s) throw new SnapshotFormatError(12, path, `refers to byte section ${rec['$bytes']}, but the file has ${sections.length}`);
        return s;
      }
      return Object.fromEntries(Object.entries(rec).map(([k, x]) => [k, revive(x, `${path}.${k}`)]));
    }
    return v as StateValue;
  };
  const root = revive(tree, '$');
  if (root === null || typeof root !== 'object' || Array.isArray(root) || root instanceof Uint8Array) throw new SnapshotFormatError(12, '$', 'root is not a record');
  return root;
}
