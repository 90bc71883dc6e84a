import { describe, expect, it } from 'vitest';
import {
  FW_CFG_DMA_CTL_ERROR,
  FW_CFG_DMA_CTL_READ,
  FW_CFG_DMA_CTL_SELECT,
  FW_CFG_DMA_CTL_SKIP,
  FW_CFG_DMA_CTL_WRITE,
  FwCfg,
} from '../../machine/devices/fw-cfg.js';
import { bswap32 } from '../../machine/devices/dev-util.js';
import { StateError } from '../../machine/state.js';
import { cloneState, FakeMemory } from './helpers.js';

const GiB = 1024 * 1024 * 1024;

function setup(ramBytes = 5 * GiB, cpus = 2) {
  const mem = new FakeMemory(0x10000);
  const fw = new FwCfg({ memory: mem, ramBytes, cpus, maxCpus: 8 });
  return { mem, fw };
}

/** The traditional interface, as firmware uses it. */
function readItem(fw: FwCfg, key: number, length: number): Uint8Array {
  fw.ioWrite(0x510, 2, key);
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) out[i] = fw.ioRead(0x511, 1);
  return out;
}

const text = (b: Uint8Array) => new TextDecoder().decode(b);
const dv = (b: Uint8Array) => new DataView(b.buffer, b.byteOffset, b.byteLength);

interface DirEntry {
  name: string;
  select: number;
  size: number;
}

function parseDir(fw: FwCfg): DirEntry[] {
  const count = dv(readItem(fw, 0x19, 4)).getUint32(0, false);
  const all = readItem(fw, 0x19, 4 + count * 64);
  const out: DirEntry[] = [];
  for (let i = 0; i < count; i++) {
    const e = all.subarray(4 + i * 64, 4 + (i + 1) * 64);
    const nameEnd = e.indexOf(0, 8);
    out.push({ size: dv(e).getUint32(0, false), select: dv(e).getUint16(4, false), name: text(e.subarray(8, nameEnd < 0 ? 64 : nameEnd)) });
  }
  return out;
}

/** Writes a FWCfgDmaAccess at `desc` and kicks it through 0x514/0x518 (big-endian registers). */
function dma(fw: FwCfg, mem: FakeMemory, desc: number, control: number, length: number, address: number): number {
  const d = dv(mem.bytes);
  d.setUint32(desc, control, false);
  d.setUint32(desc + 4, length, false);
  d.setUint32(desc + 8, Math.floor(address / 2 ** 32), false);
  d.setUint32(desc + 12, address >>> 0, false);
  fw.ioWrite(0x514, 4, bswap32(0));
  fw.ioWrite(0x518, 4, bswap32(desc));
  return d.getUint32(desc, false);
}

describe('FwCfg', () => {
  it('signature "QEMU", ID with DMA, and reading past an item\'s end returns 0', () => {
    const { fw } = setup();
    expect(text(readItem(fw, 0x00, 4))).toBe('QEMU');
    expect(readItem(fw, 0x00, 6).subarray(4)).toEqual(new Uint8Array([0, 0]));
    expect(dv(readItem(fw, 0x01, 4)).getUint32(0, true)).toBe(3);
    // Unknown and out-of-range selectors read as zeros.
    expect(readItem(fw, 0x07, 2)).toEqual(new Uint8Array([0, 0]));
    expect(readItem(fw, 0x3fff, 1)).toEqual(new Uint8Array([0]));
  });

  it('RAM size (u64 LE), CPU counts (u16 LE) and a deterministic UUID', () => {
    const { fw } = setup(5 * GiB, 2);
    expect(dv(readItem(fw, 0x03, 8)).getBigUint64(0, true)).toBe(5n * 2n ** 30n);
    expect(dv(readItem(fw, 0x05, 2)).getUint16(0, true)).toBe(2);
    expect(dv(readItem(fw, 0x0f, 2)).getUint16(0, true)).toBe(8);
    const u1 = readItem(fw, 0x02, 16);
    expect(readItem(setup(5 * GiB, 2).fw, 0x02, 16)).toEqual(u1);
    expect(readItem(setup(4 * GiB, 2).fw, 0x02, 16)).not.toEqual(u1);
    expect(u1[6]! >> 4).toBe(8); // version 8 (custom)
    expect(u1[8]! & 0xc0).toBe(0x80); // RFC 4122 variant
  });

  it('FILE_DIR lists files sorted by name with big-endian fields, selectors from 0x20', () => {
    const { fw } = setup();
    fw.addFile('opt/org.example/zeta', new Uint8Array(3).fill(0x7a));
    fw.addFile('etc/e820', new Uint8Array(40).fill(1));
    fw.addFile('etc/boot-fail-wait', Uint8Array.of(5, 0, 0, 0));
    expect(parseDir(fw)).toEqual([
      { name: 'etc/boot-fail-wait', select: 0x20, size: 4 },
      { name: 'etc/e820', select: 0x21, size: 40 },
      { name: 'opt/org.example/zeta', select: 0x22, size: 3 },
    ]);
    expect(readItem(fw, 0x22, 3)).toEqual(Uint8Array.of(0x7a, 0x7a, 0x7a));
    expect(fw.fileSelector('etc/e820')).toBe(0x21);
  });

  it('enforces the 55-character name limit and rejects duplicates', () => {
    const { fw } = setup();
    expect(() => fw.addFile('x'.repeat(56), new Uint8Array(1))).toThrow(/1\.\.55 bytes/);
    fw.addFile('y'.repeat(55), new Uint8Array(1));
    expect(parseDir(fw)[0]!.name).toBe('y'.repeat(55));
    expect(() => fw.addFile('y'.repeat(55), new Uint8Array(1))).toThrow(/duplicate/);
    expect(() => fw.addItem(0x20, new Uint8Array(1))).toThrow(/file range/);
  });

  it('addItem sets numbered and arch-local items', () => {
    const { fw } = setup();
    fw.addItem(0x8003, Uint8Array.of(1, 2, 3));
    expect(readItem(fw, 0x8003, 4)).toEqual(Uint8Array.of(1, 2, 3, 0));
  });

  it('DMA read copies an item into guest memory and clears the control word', () => {
    const { fw, mem } = setup();
    fw.addFile('etc/table', Uint8Array.from({ length: 300 }, (_, i) => i & 0xff));
    const sel = fw.fileSelector('etc/table')!;
    mem.bytes.fill(0xee, 0x2000, 0x2200);
    const ctl = dma(fw, mem, 0x1000, (sel << 16) | FW_CFG_DMA_CTL_SELECT | FW_CFG_DMA_CTL_READ, 256, 0x2000);
    expect(ctl).toBe(0);
    expect(mem.bytes.subarray(0x2000, 0x2100)).toEqual(Uint8Array.from({ length: 256 }, (_, i) => i));
    // Continue from the current offset: 44 bytes left, the rest is zero-filled.
    expect(dma(fw, mem, 0x1000, FW_CFG_DMA_CTL_READ, 64, 0x2100)).toBe(0);
    expect(mem.bytes.subarray(0x2100, 0x212c)).toEqual(Uint8Array.from({ length: 44 }, (_, i) => (256 + i) & 0xff));
    expect(mem.bytes.subarray(0x212c, 0x2140).every((b) => b === 0)).toBe(true);
    expect(mem.bytes[0x2140]).toBe(0xee);
  });

  it('DMA skip advances the offset; write is refused with the error bit; bad addresses report errors', () => {
    const { fw, mem } = setup();
    expect(dma(fw, mem, 0x1000, (0x00 << 16) | FW_CFG_DMA_CTL_SELECT | FW_CFG_DMA_CTL_SKIP, 2, 0)).toBe(0);
    expect(fw.ioRead(0x511, 1)).toBe('M'.charCodeAt(0));
    expect(dma(fw, mem, 0x1000, (0x00 << 16) | FW_CFG_DMA_CTL_SELECT | FW_CFG_DMA_CTL_WRITE, 4, 0x3000)).toBe(FW_CFG_DMA_CTL_ERROR);
    expect(dma(fw, mem, 0x1000, (0x00 << 16) | FW_CFG_DMA_CTL_SELECT | FW_CFG_DMA_CTL_READ, 4, 0xfffffff0)).toBe(FW_CFG_DMA_CTL_ERROR);
    // Descriptor itself unreadable: nothing to write back, nothing thrown.
    fw.ioWrite(0x514, 4, bswap32(0));
    expect(() => fw.ioWrite(0x518, 4, bswap32(0xfff8))).not.toThrow();
  });

  it('DMA with a 64-bit descriptor address uses the high register', () => {
    const reads: number[] = [];
    const mem = new FakeMemory(0x100);
    const fw = new FwCfg({
      memory: { read: (a, l) => (reads.push(a), mem.read(0, l)), write: () => {} },
      ramBytes: 1,
      cpus: 1,
    });
    fw.ioWrite(0x514, 4, bswap32(0x1));
    fw.ioWrite(0x518, 4, bswap32(0x2000));
    expect(reads).toEqual([0x1_0000_2000]);
    // The address register resets after each transfer: a low-only write is below 4 GiB.
    fw.ioWrite(0x518, 4, bswap32(0x3000));
    expect(reads[1]).toBe(0x3000);
  });

  it('the DMA register reads back "QEMU CFG"', () => {
    const { fw } = setup();
    expect(fw.ioRead(0x514, 4)).toBe(0x554d4551); // bytes "QEMU" in memory order
    expect(fw.ioRead(0x518, 4)).toBe(0x47464320); // " CFG"
    expect(fw.ioRead(0x514, 1)).toBe(0x51);
    expect(fw.ports).toEqual([
      { base: 0x510, length: 2 },
      { base: 0x514, length: 8 },
    ]);
  });

  it('snapshot keeps the selector and offset, and refuses a different configuration', () => {
    const a = setup();
    a.fw.addFile('etc/x', Uint8Array.of(9, 8, 7, 6));
    a.fw.ioWrite(0x510, 2, 0x20);
    a.fw.ioRead(0x511, 1);
    const saved = cloneState(a.fw.saveState());

    const b = setup();
    b.fw.addFile('etc/x', Uint8Array.of(9, 8, 7, 6));
    b.fw.restoreState(saved);
    expect([b.fw.ioRead(0x511, 1), b.fw.ioRead(0x511, 1)]).toEqual([a.fw.ioRead(0x511, 1), a.fw.ioRead(0x511, 1)]);

    const c = setup();
    c.fw.addFile('etc/x', Uint8Array.of(9, 8, 7, 5));
    expect(() => c.fw.restoreState(saved)).toThrow(StateError);
    expect(() => c.fw.restoreState(saved)).toThrow(/'contentDigest'/);
    expect(() => c.fw.restoreState({ ...saved, curOffset: -4 })).toThrow(/'curOffset'/);
  });
});
