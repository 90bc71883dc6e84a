import { describe, expect, it } from 'vitest';
import { HANDOFF_MAGIC, HandoffParseError, parseHandoff } from '../../machine/platform/handoff.js';

/** A minimal valid block: header only, no tables, correct checksum. */
function block(mutate?: (dv: DataView, b: Uint8Array) => void): Uint8Array {
  const b = new Uint8Array(0x100);
  const dv = new DataView(b.buffer);
  dv.setUint32(0x00, HANDOFF_MAGIC, true);
  dv.setUint16(0x04, 1, true);
  dv.setUint16(0x06, 0x100, true);
  dv.setUint32(0x08, 0x100, true);
  dv.setUint32(0x2c, 24, true);
  dv.setUint32(0x3c, 128, true);
  dv.setUint32(0x4c, 256, true);
  dv.setUint32(0x5c, 96, true);
  mutate?.(dv, b);
  let sum = 0;
  for (let i = 0; i < b.length; i++) if (i < 0x0c || i >= 0x10) sum = (sum + b[i]!) >>> 0;
  dv.setUint32(0x0c, sum, true);
  return b;
}

const at = 0x233000;
const reader = (b: Uint8Array) => (addr: number, len: number) => {
  const off = addr - at;
  const out = new Uint8Array(len);
  out.set(b.subarray(off, off + len));
  return out;
};

describe('handoff block parser', () => {
  it('parses a well-formed empty block', () => {
    const h = parseHandoff(reader(block()), at);
    expect(h).toMatchObject({ address: at, totalSize: 0x100, result: 'pass', containers: [], events: [], memoryMap: [] });
  });

  it('names the field and offset of every problem', () => {
    const bad = (m: (dv: DataView, b: Uint8Array) => void, field: RegExp) => expect(() => parseHandoff(reader(block(m)), at)).toThrow(field);
    bad((dv) => dv.setUint32(0, 0x12345678, true), /field 'magic' at offset 0x0/);
    bad((dv) => dv.setUint16(4, 7, true), /field 'version' at offset 0x4: unsupported version 7/);
    bad((dv) => dv.setUint32(0x2c, 20, true), /field 'memmap_entry_size' at offset 0x2c: expected 24, got 20/);
    bad(
      (dv) => {
        dv.setBigUint64(0x30, BigInt(at + 0xf0), true);
        dv.setUint32(0x38, 2, true);
      },
      /field 'containers_addr' at offset 0x30: table .* lies outside the block/,
    );
    const corrupt = block();
    corrupt[0x40] = 0x55;
    expect(() => parseHandoff(reader(corrupt), at)).toThrow(HandoffParseError);
    expect(() => parseHandoff(reader(corrupt), at)).toThrow(/field 'checksum' at offset 0xc/);
  });
});
