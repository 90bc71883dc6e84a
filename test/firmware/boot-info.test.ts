/** Unit tests for machine/platform/boot-info.ts (no QEMU needed). */
import { describe, expect, it } from 'vitest';
import {
  BOOT_INFO_MAGIC,
  BootInfoParseError,
  formatBootInfoSummary,
  parseBootInfo,
} from '../../machine/platform/boot-info.js';

interface E820 {
  base: number;
  length: number;
  type: number;
}
interface Err {
  code: number;
  severity: number;
  flag: number;
  details: [bigint, bigint, bigint, bigint];
}

/** Encode a block exactly as firmware/post/main.c build_bootinfo() lays it out. */
function encode(at: number, e820: E820[], errors: Err[], patch?: (v: DataView) => void, fixChecksum = true): Uint8Array {
  const e820Addr = at + 0x70;
  const errAddr = e820Addr + e820.length * 24;
  const total = 0x70 + e820.length * 24 + errors.length * 40;
  const b = new Uint8Array(total);
  const v = new DataView(b.buffer);
  v.setUint32(0x00, BOOT_INFO_MAGIC, true);
  v.setUint16(0x04, 1, true);
  v.setUint16(0x06, 0x70, true);
  v.setUint32(0x08, total, true);
  v.setBigUint64(0x10, 64n << 20n, true);
  v.setBigUint64(0x18, 64n << 20n, true);
  v.setBigUint64(0x20, 0n, true);
  v.setUint32(0x28, 1, true);
  v.setUint32(0x2c, errors.reduce((f, e) => f | e.flag, 0), true);
  v.setUint8(0x30, 0x5f);
  v.setUint8(0x31, 1);
  v.setUint32(0x34, e820.length, true);
  v.setBigUint64(0x38, BigInt(e820Addr), true);
  v.setUint32(0x40, 24, true);
  v.setUint32(0x44, errors.length, true);
  v.setBigUint64(0x48, BigInt(errAddr), true);
  v.setUint32(0x50, 40, true);
  v.setBigUint64(0x58, 0x100000n, true);
  v.setBigUint64(0x60, 0x100000n, true);
  v.setBigUint64(0x68, 0x105010n, true);
  e820.forEach((e, i) => {
    const o = 0x70 + i * 24;
    v.setBigUint64(o, BigInt(e.base), true);
    v.setBigUint64(o + 8, BigInt(e.length), true);
    v.setUint32(o + 16, e.type, true);
    v.setUint32(o + 20, 1, true);
  });
  errors.forEach((e, i) => {
    const o = errAddr - at + i * 40;
    v.setUint8(o, e.code);
    v.setUint8(o + 1, e.severity);
    v.setUint32(o + 4, e.flag, true);
    e.details.forEach((d, j) => v.setBigUint64(o + 8 + j * 8, d, true));
  });
  patch?.(v);
  if (fixChecksum) {
    v.setUint32(0x0c, 0, true);
    let s = 0;
    for (const x of b) s = (s + x) >>> 0;
    v.setUint32(0x0c, s, true);
  }
  return b;
}

const MAP: E820[] = [
  { base: 0, length: 0x20000, type: 2 },
  { base: 0x20000, length: 0x80000, type: 1 },
  { base: 0xa0000, length: 0x60000, type: 2 },
  { base: 0x100000, length: 0x100000, type: 1 },
  { base: 0x200000, length: 0x1000, type: 5 },
  { base: 0x201000, length: 0x3dff000, type: 1 },
  { base: 0xfee00000, length: 0x1000, type: 2 },
  { base: 0xfffe0000, length: 0x20000, type: 2 },
];
const ERRORS: Err[] = [
  { code: 0xe2, severity: 1, flag: 0x4, details: [0x200000n, 0x1000n, 0x200008n, 0x8000000000000000n] },
  { code: 0xe5, severity: 1, flag: 0x20, details: [0n, 0x1d5n, 0n, 0n] },
];

function parseError(fn: () => unknown): BootInfoParseError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(BootInfoParseError);
    return e as BootInfoParseError;
  }
  throw new Error('expected a BootInfoParseError');
}

describe('parseBootInfo', () => {
  it('parses a well-formed block (e820 table, POST errors with 64-bit details)', () => {
    const bi = parseBootInfo(encode(0x8000, MAP, ERRORS), 0x8000);
    expect(bi.address).toBe(0x8000);
    expect(bi.version).toBe(1);
    expect(bi.totalSize).toBe(0x70 + 8 * 24 + 2 * 40);
    expect(bi.ramSize).toBe(64 * 1024 * 1024);
    expect(bi.cpuCount).toBe(1);
    expect(bi.postFlags).toBe(0x24);
    expect(bi.lastPostCode).toBe(0x5f);
    expect(bi.console).toBe('com1');
    expect(bi.e820Address).toBe(0x8070);
    expect(bi.e820.map((e) => [e.base, e.length, e.type])).toEqual(MAP.map((e) => [e.base, e.length, e.type]));
    expect(bi.errors[0]).toEqual({ code: 0xe2, severity: 'error', flag: 4, details: ERRORS[0]!.details });
    expect(bi.nextStage).toEqual({ entry: 0x100000, start: 0x100000, end: 0x105010 });
    expect(formatBootInfoSummary(bi)).toBe(
      'payload: boot-info v1, 64 MiB, 1 CPU, 8 e820 entries, POST flags 0x24, last POST 0x5F',
    );
  });

  it('reads the block out of a larger RAM window via physical addresses', () => {
    const block = encode(0x8000, MAP.slice(0, 4), []);
    const ram = new Uint8Array(0x10000);
    ram.set(block, 0x8000);
    const bi = parseBootInfo(ram, 0n, { blockAddress: 0x8000 });
    expect(bi.e820).toHaveLength(4);
    expect(bi.errors).toEqual([]);
  });

  it('rejects a bad magic, naming the field and offset', () => {
    const b = encode(0x8000, MAP, ERRORS);
    b[0] = 0x00;
    const e = parseError(() => parseBootInfo(b, 0x8000));
    expect(e.field).toBe('magic');
    expect(e.offset).toBe(0);
    expect(e.message).toBe("boot-info: field 'magic' at offset 0x0: expected 0x49424d46 (\"FMBI\"), got 0x49424d00");
  });

  it('rejects a truncated block (shorter than total_size)', () => {
    const b = encode(0x8000, MAP, ERRORS).subarray(0, 0x90);
    const e = parseError(() => parseBootInfo(b, 0x8000));
    expect(e.field).toBe('total_size');
    expect(e.offset).toBe(8);
    expect(e.message).toMatch(/declares 384 bytes but only 144 are available \(truncated\)/);
  });

  it('rejects a block cut inside the fixed header', () => {
    const e = parseError(() => parseBootInfo(encode(0x8000, MAP, []).subarray(0, 6), 0x8000));
    expect(e.field).toBe('header_size');
    expect(e.offset).toBe(6);
    expect(e.message).toMatch(/truncated/);
  });

  it('rejects a checksum mismatch', () => {
    const b = encode(0x8000, MAP, ERRORS);
    b[0x20] = (b[0x20] ?? 0) ^ 1;
    const e = parseError(() => parseBootInfo(b, 0x8000));
    expect(e.field).toBe('checksum');
    expect(e.offset).toBe(0xc);
    expect(() => parseBootInfo(b, 0x8000, { verifyChecksum: false })).not.toThrow();
  });

  it('rejects an unsupported version', () => {
    const e = parseError(() => parseBootInfo(encode(0x8000, MAP, [], (v) => v.setUint16(4, 2, true)), 0x8000));
    expect(e.field).toBe('version');
    expect(e.offset).toBe(4);
  });

  it('rejects an e820 table pointing outside the block', () => {
    const b = encode(0x8000, MAP, [], (v) => v.setBigUint64(0x38, 0x9000n, true));
    const e = parseError(() => parseBootInfo(b, 0x8000));
    expect(e.field).toBe('e820_addr');
    expect(e.offset).toBe(0x38);
  });

  it('names the table entry for a bad error severity', () => {
    const b = encode(0x8000, MAP, ERRORS, (v) => v.setUint8(0x70 + 8 * 24 + 40 + 1, 7));
    const e = parseError(() => parseBootInfo(b, 0x8000));
    expect(e.field).toBe('errors[1].severity');
    expect(e.offset).toBe(0x70 + 8 * 24 + 40 + 1);
  });

  it('rejects unsorted / overlapping e820 entries', () => {
    const bad = [MAP[1]!, MAP[0]!];
    const e = parseError(() => parseBootInfo(encode(0x8000, bad, []), 0x8000));
    expect(e.field).toBe('e820[1].base');
  });

  it('rejects a block address outside the window', () => {
    const e = parseError(() => parseBootInfo(new Uint8Array(16), 0x8000, { blockAddress: 0x1000 }));
    expect(e.field).toBe('magic');
  });
});
