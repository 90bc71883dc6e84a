/**
 * Where fields live inside Unicorn's raw context blob (QEMU's CPUX86State).
 * Unicorn has no API to load a full segment cache (needed to change CPL when
 * we deliver an interrupt from ring 3), to read exception error codes, or to
 * reset `old_exception` (left set, it turns the next #GP/#PF into #DF). So we
 * find these offsets once per process with a self-test against the running
 * build instead of hard-coding them.
 */
import { UnicornEngine } from '../unicorn/engine.js';
import { REG, UC_MODE_16, UC_MODE_64, UC_PROT_ALL } from '../unicorn/constants.js';
import { cachedProbe, hasIntFields } from '../unicorn/probe-cache.js';

export interface ContextLayout {
  size: number;
  /** regs[0] (RAX). eip, eflags follow at +128, +136. */
  regs: number;
  hflags: number;
  /** QEMU's hflags2 (GIF, NMI blocking), right after hflags. */
  hflags2: number;
  /** segs[0..5] = ES, CS, SS, DS, FS, GS; then LDT, TR, GDT, IDT; 24 bytes each. */
  segs: number;
  cr: number;
  errorCode: number;
  exceptionIsInt: number;
  oldException: number;
}

export const SEG = { ES: 0, CS: 1, SS: 2, DS: 3, FS: 4, GS: 5, LDT: 6, TR: 7, GDT: 8, IDT: 9 } as const;
export const SEG_CACHE_SIZE = 24;

/** QEMU hflags bits we maintain when loading segments. */
export const HF = {
  CPL_MASK: 3,
  INHIBIT_IRQ: 1 << 3,
  CS32: 1 << 4,
  SS32: 1 << 5,
  ADDSEG: 1 << 6,
  PE: 1 << 7,
  LMA: 1 << 14,
  CS64: 1 << 15,
} as const;

export class LayoutError extends Error {
  override name = 'LayoutError';
}

let cached: ContextLayout | undefined;

export function contextLayout(): ContextLayout {
  cached ??= cachedProbe('contextLayout', hasIntFields('size', 'regs', 'hflags', 'hflags2', 'segs', 'cr', 'errorCode', 'exceptionIsInt', 'oldException'), discover);
  return cached;
}

function findU64(blob: Uint8Array, value: bigint): number[] {
  const dv = new DataView(blob.buffer, blob.byteOffset, blob.byteLength);
  const hits: number[] = [];
  for (let i = 0; i + 8 <= blob.length; i += 4) if (dv.getBigUint64(i, true) === value) hits.push(i);
  return hits;
}

function discover(): ContextLayout {
  const e16 = new UnicornEngine(UC_MODE_16);
  const e = new UnicornEngine(UC_MODE_64);
  try {
    // Registers: a distinctive RAX value.
    e.writeReg(REG.RAX, 0x5a17_c0de_1234_5678n);
    e16.writeReg(REG.EAX, 0x5a17_c0de);
    e16.writeReg(REG.CS, 0x1234);
    e16.writeMmr(REG.GDTR, { selector: 0, base: 0x0bad_f000n, limit: 0x77, flags: 0 });
    const blob16 = e16.saveContext();
    const regHits = findU64(e.saveContext(), 0x5a17_c0de_1234_5678n);
    if (regHits.length !== 1) throw new LayoutError(`RAX marker found ${regHits.length} times in the context`);
    const regs = regHits[0]!;
    if (new DataView(blob16.buffer).getUint32(regs, true) !== 0x5a17_c0de) throw new LayoutError('16-bit and 64-bit engines disagree on the register layout');
    const segs = regs + 184;
    const hflags = regs + 176;
    const dv16 = new DataView(blob16.buffer);
    const csSel = dv16.getUint32(segs + SEG.CS * SEG_CACHE_SIZE, true);
    const csBase = dv16.getBigUint64(segs + SEG.CS * SEG_CACHE_SIZE + 8, true);
    const gdtBase = dv16.getBigUint64(segs + SEG.GDT * SEG_CACHE_SIZE + 8, true);
    if (csSel !== 0x1234 || csBase !== 0x12340n || gdtBase !== 0x0bad_f000n) {
      throw new LayoutError(`segment cache layout mismatch (CS ${csSel.toString(16)} base ${csBase.toString(16)}, GDT base ${gdtBase.toString(16)})`);
    }
    const cr = segs + 10 * SEG_CACHE_SIZE;

    // Exceptions: run `div` by zero in a 64-bit engine and watch what changes.
    const ram = new Uint8Array(new SharedArrayBuffer(0x10000));
    ram.set([0x31, 0xc9, 0xf7, 0xf1, 0xf4], 0x1000); // xor ecx,ecx; div ecx; hlt
    e.mapHost(0, ram, UC_PROT_ALL);
    let seen = -1;
    e.onInterrupt((n) => {
      seen = n;
      e.stop();
    });
    const before = e.saveContext();
    e.start(0x1000n);
    const after = e.saveContext();
    if (seen !== 0) throw new LayoutError(`#DE self-test raised vector ${seen}`);
    const b = new DataView(before.buffer);
    const a = new DataView(after.buffer);
    let oldException = -1;
    for (let i = cr; i + 4 <= after.length; i += 4) {
      if (b.getInt32(i, true) === -1 && a.getInt32(i, true) === 0) {
        oldException = i;
        break;
      }
    }
    if (oldException < 0) throw new LayoutError('old_exception not found by the #DE self-test');
    // error_code and exception_is_int sit together; find them with a #GP that has an error code.
    const layout: ContextLayout = { size: after.length, regs, hflags, hflags2: hflags + 4, segs, cr, errorCode: -1, exceptionIsInt: -1, oldException };
    const fixed = e.saveContext();
    new DataView(fixed.buffer).setInt32(oldException, -1, true);
    e.restoreContext(fixed);
    // mov ax, 0x1234; mov ds, ax -> #GP(0x1234) in long mode with an empty GDT
    ram.set([0x66, 0xb8, 0x34, 0x12, 0x8e, 0xd8, 0xf4], 0x1100);
    seen = -1;
    e.start(0x1100n);
    if (seen !== 13) throw new LayoutError(`#GP self-test raised vector ${seen} (old_exception offset ${oldException} wrong?)`);
    const gp = new DataView(e.saveContext().buffer);
    for (let i = cr; i + 4 <= after.length; i += 4) {
      if (gp.getInt32(i, true) === 0x1234 && i !== oldException) {
        layout.errorCode = i;
        layout.exceptionIsInt = i + 4;
        break;
      }
    }
    if (layout.errorCode < 0) throw new LayoutError('error_code not found by the #GP self-test');
    return layout;
  } finally {
    e16.close();
    e.close();
  }
}
