/**
 * A bad DIMM range for fault injection (`--fault ram:<addr>+<len>[:flip]`).
 * Stuck bits: one bit per 64-bit word reads stuck at 1 (even words) or 0
 * (odd words), the bit chosen from the address and the seed, so any pattern
 * test finds it and runs are reproducible. Flip: a bit toggles on every read.
 */
export interface RamFaultSpec {
  base: number;
  length: number;
  mode: 'stuck' | 'flip';
  seed: number;
}

export class FaultyRam {
  private readonly dv: DataView;
  private flips = 0;

  constructor(
    private readonly ram: Uint8Array,
    private readonly ramOffset: number,
    readonly size: number,
    private readonly spec: RamFaultSpec,
  ) {
    this.dv = new DataView(ram.buffer);
  }

  /** The stuck bit of the 64-bit word at `wordIndex` and its stuck value. */
  stuckBit(wordIndex: number): { bit: number; value: 0 | 1 } {
    const bit = (wordIndex * 13 + this.spec.seed * 7 + 5) % 64;
    return { bit, value: wordIndex % 2 === 0 ? 1 : 0 };
  }

  read(offset: number, size: number): bigint {
    let v = 0n;
    for (let i = 0; i < size; i++) v |= BigInt(this.byte(offset + i)) << BigInt(8 * i);
    return v;
  }

  write(offset: number, size: number, value: bigint): void {
    for (let i = 0; i < size; i++) this.ram[this.ramOffset + offset + i] = Number((value >> BigInt(8 * i)) & 0xffn);
  }

  private byte(offset: number): number {
    const stored = this.ram[this.ramOffset + offset]!;
    const word = Math.floor(offset / 8);
    if (this.spec.mode === 'flip') {
      // A weak cell: the low bit of the word's first byte reads inverted every other read.
      if (offset % 8 === 0 && this.flips++ % 2 === 1) return stored ^ 1;
      return stored;
    }
    const { bit, value } = this.stuckBit(word);
    if (Math.floor(bit / 8) !== offset % 8) return stored;
    const mask = 1 << (bit % 8);
    return value === 1 ? stored | mask : stored & ~mask;
  }
}
