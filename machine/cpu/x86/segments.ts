/** Segment descriptors and the hflags QEMU derives from them. */
import { HF } from './context-layout.js';

export interface SegCache {
  selector: number;
  base: bigint;
  limit: number;
  /** The descriptor's high dword as QEMU keeps it (type, S, DPL, P, AVL, L, D/B, G). */
  flags: number;
}

export const DESC = {
  A: 1 << 8,
  W: 1 << 9, // writable data / readable code
  CODE: 1 << 11,
  S: 1 << 12,
  DPL_SHIFT: 13,
  P: 1 << 15,
  L: 1 << 21,
  B: 1 << 22,
  G: 1 << 23,
} as const;

export const dpl = (flags: number): number => (flags >>> DESC.DPL_SHIFT) & 3;

/** Decodes an 8-byte GDT/LDT descriptor into a segment cache. */
export function decodeDescriptor(selector: number, lo: number, hi: number): SegCache {
  const base = BigInt(((lo >>> 16) | ((hi & 0xff) << 16) | (hi & 0xff000000)) >>> 0);
  let limit = (lo & 0xffff) | (hi & 0xf0000);
  if (hi & DESC.G) limit = ((limit << 12) | 0xfff) >>> 0;
  return { selector, base, limit, flags: hi & 0x00ffff00 };
}

export interface GateDescriptor {
  offset: bigint;
  selector: number;
  type: number;
  dpl: number;
  present: boolean;
  ist: number;
}

/** IDT gate: 8 bytes in legacy modes, 16 in long mode. */
export function decodeGate(bytes: Uint8Array, long: boolean): GateDescriptor {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const lo = dv.getUint32(0, true);
  const hi = dv.getUint32(4, true);
  let offset = BigInt(((lo & 0xffff) | (hi & 0xffff0000)) >>> 0);
  if (long) offset |= BigInt(dv.getUint32(8, true)) << 32n;
  return { offset, selector: lo >>> 16, type: (hi >>> 8) & 0xf, dpl: (hi >>> 13) & 3, present: (hi & (1 << 15)) !== 0, ist: long ? hi & 7 : 0 };
}

/**
 * Recomputes the hflags bits that follow from CS/SS, exactly as QEMU's
 * cpu_x86_load_seg_cache does, so the translator sees a consistent CPU.
 */
export function hflagsFor(hflags: number, cs: SegCache, ss: SegCache, dsBase: bigint, esBase: bigint, cr0pe: boolean, vm86: boolean): number {
  let h = hflags;
  if (h & HF.LMA && cs.flags & DESC.L) {
    h |= HF.CS32 | HF.SS32 | HF.CS64;
  } else {
    h = (h & ~(HF.CS32 | HF.CS64)) | (cs.flags & DESC.B ? HF.CS32 : 0);
  }
  h = (h & ~HF.CPL_MASK) | dpl(ss.flags);
  let extra = ss.flags & DESC.B ? HF.SS32 : 0;
  if (h & HF.CS64) {
    // long mode: segment bases of DS/ES/SS are ignored
  } else if (!cr0pe || vm86 || !(h & HF.CS32)) {
    extra |= HF.ADDSEG;
  } else if ((dsBase | esBase | ss.base) !== 0n) {
    extra |= HF.ADDSEG;
  }
  return (h & ~(HF.SS32 | HF.ADDSEG)) | extra;
}
