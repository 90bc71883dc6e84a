/**
 * Snapshot codec v2 (machine/snapshot/codec.ts): round trips, and a refusal
 * naming offset and section for every truncation, every flipped byte, old and
 * unknown versions. The layout is rebuilt here from docs/snapshots.md, so the
 * test checks the documented format, not just encode/decode agreeing.
 */
import { crc32 } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { decodeSnapshot, encodeSnapshot, SnapshotFormatError } from '../../machine/snapshot/codec.js';
import type { StateRecord } from '../../machine/state.js';

/** A v2 file from raw parts, as docs/snapshots.md describes it. */
function buildFile(json: string, sections: Uint8Array[], opts: { magic?: string; version?: number; count?: number } = {}): Uint8Array {
  const parts = [new TextEncoder().encode(json), ...sections];
  const header = Buffer.alloc(20);
  header.write(opts.magic ?? 'FMSNAP02', 0, 'latin1');
  header.writeUInt32LE(opts.version ?? 2, 8);
  header.writeUInt32LE(opts.count ?? parts.length, 12);
  header.writeUInt32LE(crc32(header.subarray(0, 16)), 16);
  const out = [header];
  for (const p of parts) {
    const sh = Buffer.alloc(12);
    sh.writeBigUInt64LE(BigInt(p.length), 0);
    sh.writeUInt32LE(crc32(p, crc32(sh.subarray(0, 8))), 8);
    out.push(sh, Buffer.from(p));
  }
  return new Uint8Array(Buffer.concat(out));
}

const sample: StateRecord = {
  version: 3,
  name: 'vm0 ✓',
  cpu: { rip: 0xfff0, regs: new Uint8Array([1, 2, 3, 4]), flags: [true, false, null] },
  devices: [{ id: 'uart@0x3f8', fifo: new Uint8Array(0) }, { id: 'pit', counters: [1, 2, 3] }],
  ram: new Uint8Array(300).map((_, i) => i & 0xff),
};

function refusal(bytes: Uint8Array): SnapshotFormatError {
  try {
    decodeSnapshot(bytes);
  } catch (e) {
    if (e instanceof SnapshotFormatError) return e;
    throw new Error(`expected a SnapshotFormatError, got ${(e as Error).name}: ${(e as Error).message}`);
  }
  throw new Error('decodeSnapshot accepted the damaged file');
}

describe('snapshot codec v2', () => {
  it('round-trips records with nested byte sections, empty bytes, unicode and nulls', () => {
    const bytes = encodeSnapshot(sample);
    expect(new TextDecoder().decode(bytes.subarray(0, 8))).toBe('FMSNAP02');
    expect(Buffer.from(bytes).readUInt32LE(8)).toBe(2);
    expect(Buffer.from(bytes).readUInt32LE(12)).toBe(4); // JSON tree + 3 byte sections
    expect(decodeSnapshot(bytes)).toEqual(sample);
    expect(decodeSnapshot(encodeSnapshot({}))).toEqual({});
  });

  it('writes exactly the documented layout', () => {
    const state: StateRecord = { a: new Uint8Array([9, 8, 7]), b: 1 };
    expect(Buffer.from(encodeSnapshot(state))).toEqual(Buffer.from(buildFile('{"a":{"$bytes":1},"b":1}', [new Uint8Array([9, 8, 7])])));
  });

  it('returns copies of the byte sections, not views of the file', () => {
    const bytes = encodeSnapshot({ m: new Uint8Array([1, 2, 3]) });
    const rec = decodeSnapshot(bytes);
    bytes.fill(0);
    expect(rec['m']).toEqual(new Uint8Array([1, 2, 3]));
  });

  it('refuses every truncation, naming the offset and what is missing', () => {
    const bytes = encodeSnapshot(sample);
    for (let n = 0; n < bytes.length; n++) {
      const e = refusal(bytes.subarray(0, n));
      expect(e.message).toMatch(n === 0 || n >= 8 ? /truncated/ : /truncated|magic/);
      expect(e.message).toMatch(/^snapshot: offset \d+: /);
    }
    expect(refusal(bytes.subarray(0, 20)).message).toContain('section 0 (JSON tree) header');
  });

  it('refuses every single flipped byte, in the header and in each section', () => {
    const bytes = encodeSnapshot(sample);
    const kinds = new Set<string>();
    for (let i = 0; i < bytes.length; i++) {
      for (const mask of [0x01, 0x80]) {
        const bad = bytes.slice();
        bad[i]! ^= mask;
        const e = refusal(bad);
        kinds.add(e.field.replace(/\d+/g, 'N'));
      }
    }
    // Each part of the file is protected by its own check.
    expect([...kinds]).toEqual(expect.arrayContaining(['magic', 'header CRC', 'section N (JSON tree) CRC', 'section N CRC']));
  });

  it('names the section whose CRC does not match', () => {
    const bytes = encodeSnapshot(sample);
    // Section 3 is `ram`, the last: its data is the file's last 300 bytes.
    const bad = bytes.slice();
    bad[bytes.length - 5]! ^= 0xff;
    const e = refusal(bad);
    expect(e.message).toContain('CRC mismatch in section 3');
    expect(e.offset).toBe(bytes.length - 300 - 4);
  });

  it('refuses the old v1 format and unknown versions, saying which versions this build reads', () => {
    const v1 = Buffer.alloc(16);
    v1.write('FMSNAP01', 0, 'latin1');
    v1.writeUInt32LE(2, 8);
    v1.write('{}', 12, 'latin1');
    expect(refusal(new Uint8Array(v1)).message).toMatch(/FMSNAP01 is the old format version 1.*reads format version 2/);
    expect(refusal(buildFile('{}', [], { magic: 'FMSNAP03', version: 3 })).message).toMatch(/unknown format version 3; this build reads format version 2/);
    expect(refusal(buildFile('{}', [], { version: 7 })).message).toMatch(/offset 8: format version: 7 does not match the magic FMSNAP02/);
    expect(refusal(new TextEncoder().encode('\x7fELF and something else entirely')).message).toMatch(/magic: .*not a Firmament snapshot/);
  });

  it('refuses structurally wrong files whose CRCs are right', () => {
    const one = new Uint8Array([1]);
    expect(refusal(buildFile('{}', [], { count: 0 })).field).toBe('section count');
    expect(refusal(buildFile('{}', [], { count: 2 })).message).toMatch(/truncated: 2 sections declared, 1 present/);
    expect(refusal(new Uint8Array([...buildFile('{}', []), 0])).message).toMatch(/1 bytes follow the last of 1 sections/);
    expect(refusal(buildFile('{"a":{"$bytes":2}}', [one])).message).toMatch(/\$\.a: refers to byte section 2, but the file has sections 1\.\.1/);
    expect(refusal(buildFile('{"a":{"$bytes":1},"b":{"$bytes":1}}', [one])).message).toMatch(/\$\.b: byte section 1 is referenced twice/);
    expect(refusal(buildFile('{}', [one])).message).toMatch(/byte section 1 not referenced/);
    expect(refusal(buildFile('{"a":{"$bytes":"x"}}', [])).message).toMatch(/\$\.a: malformed byte reference/);
    expect(refusal(buildFile('[1,2]', [])).message).toMatch(/root is not a record/);
    expect(refusal(buildFile('{"a":', [])).field).toBe('section 0 (JSON tree)');
    expect(refusal(buildFile(`{"a":${'['.repeat(5000)}${']'.repeat(5000)}}`, [])).message).toMatch(/nested deeper than 256 levels/);
  });

  it('refuses to save what JSON would silently change', () => {
    expect(() => encodeSnapshot({ cpu: { tsc: NaN } })).toThrow(/\$\.cpu\.tsc: NaN cannot be saved/);
    expect(() => encodeSnapshot({ a: [1, Infinity] })).toThrow(/\$\.a\[1\]/);
    expect(() => encodeSnapshot({ a: { $bytes: 1 } })).toThrow(/reserved/);
  });
});
