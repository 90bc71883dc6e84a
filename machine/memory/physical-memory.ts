/**
 * The machine's physical address space: RAM, the firmware ROM (top of 4 GiB,
 * aliased below 1 MiB), the legacy hole, and injected bad-RAM ranges.
 * RAM lives in one SharedArrayBuffer mapped into every CPU engine, so host
 * code (devices, walkers, loaders) and guest code see the same bytes. It can
 * instead be given bytes from elsewhere (a shared-memory file that outlives
 * the process, machine/memory/shared-ram.ts, for live update).
 */
import type { PhysicalMemoryAccess } from '../devices/device.js';
import type { PhysicalReader } from '../cpu/x86/paging.js';
import { FaultyRam, type RamFaultSpec } from './faulty-ram.js';

export const KiB = 1024;
export const MiB = 1024 * KiB;
export const GiB = 1024 * MiB;
export const FOUR_GIB = 4 * GiB;
/** Low RAM stops here; the rest is mapped from 4 GiB up, as on a PC with a PCI hole. */
export const LOW_RAM_LIMIT = 3 * GiB;
export const LEGACY_HOLE = { base: 0xa0000, end: 0xc0000 } as const;
export const BIOS_ALIAS = { base: 0xe0000, end: 0x100000 } as const;
export const ROM_SIZE = 128 * KiB;

export type RegionKind = 'ram' | 'rom' | 'rom-alias' | 'open-bus' | 'bad-ram';

export interface Region {
  readonly name: string;
  readonly kind: RegionKind;
  readonly base: number;
  readonly size: number;
  /** Host bytes backing RAM/ROM regions. */
  readonly view?: Uint8Array;
  /** For bad RAM: the fault model. */
  readonly faulty?: FaultyRam;
}

export class MemoryError extends Error {
  override name = 'MemoryError';
}

const ZERO_CHUNK = new Uint8Array(64 * KiB);

export class PhysicalMemory implements PhysicalReader, PhysicalMemoryAccess {
  readonly ram: Uint8Array;
  readonly rom: Uint8Array;
  readonly regions: readonly Region[];
  readonly lowRamTop: number;
  private readonly dv: DataView;
  private readonly writeListeners: ((addr: number, length: number) => void)[] = [];

  constructor(
    readonly ramSize: number,
    romImage: Uint8Array,
    faults: readonly RamFaultSpec[] = [],
    /** RAM bytes to use instead of a new SharedArrayBuffer (exactly ramSize long). */
    ramBacking?: Uint8Array,
  ) {
    if (ramSize < 2 * MiB || ramSize % (64 * KiB) !== 0) throw new MemoryError(`RAM size ${ramSize} must be a multiple of 64 KiB and at least 2 MiB`);
    if (romImage.length !== ROM_SIZE) throw new MemoryError(`firmware ROM is ${romImage.length} bytes, expected exactly ${ROM_SIZE}`);
    if (ramBacking && ramBacking.length !== ramSize) throw new MemoryError(`RAM backing is ${ramBacking.length} bytes, expected ${ramSize}`);
    this.ram = ramBacking ?? new Uint8Array(new SharedArrayBuffer(ramSize));
    this.dv = new DataView(this.ram.buffer);
    this.rom = new Uint8Array(new SharedArrayBuffer(ROM_SIZE));
    this.rom.set(romImage);
    this.lowRamTop = Math.min(ramSize, LOW_RAM_LIMIT);
    this.regions = this.layout(faults);
  }

  private layout(faults: readonly RamFaultSpec[]): Region[] {
    const out: Region[] = [];
    const ramPiece = (name: string, base: number, end: number, ramOffset: number): void => {
      // Split RAM around bad ranges: those become MMIO with the fault model.
      let cur = base;
      const inside = faults.filter((f) => f.base < end && f.base + f.length > base).sort((a, b) => a.base - b.base);
      for (const f of inside) {
        const fb = Math.max(f.base, base);
        const fe = Math.min(f.base + f.length, end);
        if (fb > cur) out.push({ name, kind: 'ram', base: cur, size: fb - cur, view: this.ram.subarray(ramOffset + cur - base, ramOffset + fb - base) });
        out.push({ name: `bad-ram@0x${fb.toString(16)}`, kind: 'bad-ram', base: fb, size: fe - fb, faulty: new FaultyRam(this.ram, ramOffset + fb - base, fe - fb, f) });
        cur = fe;
      }
      if (end > cur) out.push({ name, kind: 'ram', base: cur, size: end - cur, view: this.ram.subarray(ramOffset + cur - base, ramOffset + end - base) });
    };
    ramPiece('ram-low', 0, Math.min(this.lowRamTop, LEGACY_HOLE.base), 0);
    out.push({ name: 'legacy-hole', kind: 'open-bus', base: LEGACY_HOLE.base, size: LEGACY_HOLE.end - LEGACY_HOLE.base });
    if (this.lowRamTop > LEGACY_HOLE.end) ramPiece('ram-c0000', LEGACY_HOLE.end, Math.min(this.lowRamTop, BIOS_ALIAS.base), LEGACY_HOLE.end);
    out.push({ name: 'bios-alias', kind: 'rom-alias', base: BIOS_ALIAS.base, size: BIOS_ALIAS.end - BIOS_ALIAS.base, view: this.rom.subarray(ROM_SIZE - (BIOS_ALIAS.end - BIOS_ALIAS.base)) });
    if (this.lowRamTop > BIOS_ALIAS.end) ramPiece('ram', BIOS_ALIAS.end, this.lowRamTop, BIOS_ALIAS.end);
    out.push({ name: 'rom', kind: 'rom', base: FOUR_GIB - ROM_SIZE, size: ROM_SIZE, view: this.rom });
    if (this.ramSize > this.lowRamTop) ramPiece('ram-high', FOUR_GIB, FOUR_GIB + this.ramSize - this.lowRamTop, this.lowRamTop);
    for (const f of faults) {
      if (!out.some((r) => r.kind === 'bad-ram' && r.base <= f.base && f.base < r.base + r.size)) {
        throw new MemoryError(`fault ram:0x${f.base.toString(16)}+0x${f.length.toString(16)} is not inside installed RAM (RAM is ${this.ramSize} bytes)`);
      }
    }
    return out;
  }

  /** RAM offset of a physical address, or -1 for non-RAM (ROM, holes, bad ranges, unmapped). */
  ramOffset(paddr: number): number {
    if (paddr < this.lowRamTop) {
      if (paddr >= LEGACY_HOLE.base && paddr < LEGACY_HOLE.end) return -1;
      if (paddr >= BIOS_ALIAS.base && paddr < BIOS_ALIAS.end) return -1;
      return paddr;
    }
    if (paddr >= FOUR_GIB && paddr < FOUR_GIB + this.ramSize - this.lowRamTop) return paddr - FOUR_GIB + this.lowRamTop;
    return -1;
  }

  regionAt(paddr: number): Region | undefined {
    for (const r of this.regions) if (paddr >= r.base && paddr < r.base + r.size) return r;
    return undefined;
  }

  isRam(paddr: number): boolean {
    const r = this.regionAt(paddr);
    return r !== undefined && (r.kind === 'ram' || r.kind === 'bad-ram');
  }

  readU8(paddr: number): number {
    const off = this.ramOffset(paddr);
    if (off >= 0 && !this.faultyAt(paddr)) return this.ram[off]!;
    return this.slowRead(paddr, 1);
  }

  readU32(paddr: number): number {
    const off = this.ramOffset(paddr);
    if (off >= 0 && off + 4 <= this.ram.length && !this.faultyAt(paddr)) return this.dv.getUint32(off, true);
    return this.slowRead(paddr, 4);
  }

  readU64(paddr: number): bigint {
    const off = this.ramOffset(paddr);
    if (off >= 0 && off + 8 <= this.ram.length && !this.faultyAt(paddr)) return this.dv.getBigUint64(off, true);
    return BigInt(this.readU32(paddr) >>> 0) | (BigInt(this.readU32(paddr + 4) >>> 0) << 32n);
  }

  /** CPU-internal stores (A/D bits, exception frames): no code invalidation. */
  writeU32(paddr: number, value: number): void {
    const off = this.ramOffset(paddr);
    if (off >= 0 && off + 4 <= this.ram.length && !this.faultyAt(paddr)) this.dv.setUint32(off, value >>> 0, true);
    else for (let i = 0; i < 4; i++) this.slowWrite(paddr + i, (value >>> (8 * i)) & 0xff);
  }

  writeU64(paddr: number, value: bigint): void {
    this.writeU32(paddr, Number(value & 0xffff_ffffn));
    this.writeU32(paddr + 4, Number((value >> 32n) & 0xffff_ffffn));
  }

  read(addr: number, length: number): Uint8Array {
    const out = new Uint8Array(length);
    const off = this.ramOffset(addr);
    if (off >= 0 && this.ramOffset(addr + length - 1) === off + length - 1 && !this.anyFaulty(addr, length)) {
      out.set(this.ram.subarray(off, off + length));
      return out;
    }
    for (let i = 0; i < length; i++) out[i] = this.readU8(addr + i);
    return out;
  }

  /** Device DMA and loaders: writes, then tells listeners so translated code is dropped. */
  write(addr: number, data: Uint8Array): void {
    this.writeBytes(addr, data);
    for (const l of this.writeListeners) l(addr, data.length);
  }

  readBytes(addr: number, length: number): Uint8Array {
    return this.read(addr, length);
  }

  /** CPU stores done by our code (exception frames): no DMA listeners, like any guest store. */
  writeBytes(addr: number, data: Uint8Array): void {
    const off = this.ramOffset(addr);
    if (off >= 0 && this.ramOffset(addr + data.length - 1) === off + data.length - 1 && !this.anyFaulty(addr, data.length)) {
      this.ram.set(data, off);
    } else {
      for (let i = 0; i < data.length; i++) this.slowWrite(addr + i, data[i]!);
    }
  }

  /**
   * Whether [addr, addr + length) is plain RAM holding only zero bytes. The frame allocator asks
   * before zeroing a frame: fresh RAM is already zero, and reading it (memcmp) neither writes
   * nor makes the host commit pages that were never touched.
   */
  isZero(addr: number, length: number): boolean {
    const off = this.ramOffset(addr);
    if (length <= 0 || off < 0 || this.ramOffset(addr + length - 1) !== off + length - 1 || this.anyFaulty(addr, length)) return false;
    for (let at = off; at < off + length; at += ZERO_CHUNK.length) {
      const n = Math.min(ZERO_CHUNK.length, off + length - at);
      if (Buffer.compare(this.ram.subarray(at, at + n), n === ZERO_CHUNK.length ? ZERO_CHUNK : ZERO_CHUNK.subarray(0, n)) !== 0) return false;
    }
    return true;
  }

  onHostWrite(listener: (addr: number, length: number) => void): void {
    this.writeListeners.push(listener);
  }

  private faultyAt(paddr: number): boolean {
    return this.hasFaults && this.regionAt(paddr)?.kind === 'bad-ram';
  }

  private anyFaulty(addr: number, length: number): boolean {
    if (!this.hasFaults) return false;
    return this.regions.some((r) => r.kind === 'bad-ram' && r.base < addr + length && addr < r.base + r.size);
  }

  private get hasFaults(): boolean {
    return this.regions.some((r) => r.kind === 'bad-ram');
  }

  private slowRead(paddr: number, size: number): number {
    let v = 0;
    for (let i = 0; i < size; i++) v |= this.byteAt(paddr + i) << (8 * i);
    return v >>> 0;
  }

  private byteAt(paddr: number): number {
    const r = this.regionAt(paddr);
    if (!r) throw new MemoryError(`read of unmapped physical address 0x${paddr.toString(16)}`);
    if (r.kind === 'bad-ram') return Number(r.faulty!.read(paddr - r.base, 1));
    if (r.view) return r.view[paddr - r.base]!;
    return 0xff; // open bus
  }

  private slowWrite(paddr: number, byte: number): void {
    const r = this.regionAt(paddr);
    if (!r) throw new MemoryError(`write to unmapped physical address 0x${paddr.toString(16)}`);
    if (r.kind === 'bad-ram') r.faulty!.write(paddr - r.base, 1, BigInt(byte));
    else if (r.kind === 'ram') r.view![paddr - r.base] = byte;
    // ROM, its alias and the open bus ignore writes, as the hardware does.
  }
}
