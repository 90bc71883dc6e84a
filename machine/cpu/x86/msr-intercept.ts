/**
 * RDMSR/WRMSR exits. Unicorn 2.1 has no hook for them (UC_ERR_HOOK), and
 * stopping at them with code hooks corrupts state. But Unicorn's QEMU core
 * checks AMD SVM intercepts inside its RDMSR/WRMSR helpers whenever the CPU is
 * in SVM guest mode: an intercepted access raises EXCP_VMEXIT + exit code,
 * which Unicorn hands to UC_HOOK_INTR with the state restored precisely to the
 * instruction, as for a #GP. So a vCPU's context carries the guest-mode flag,
 * the MSR-protection intercept and a pointer to a VMCB-format control area in
 * host RAM; the control area points at an MSR permission map (AMD APM vol. 2,
 * 15.11) that chooses which MSRs exit. The guest cannot see any of it.
 *
 * The context offsets are found once per process by running a real VMRUN in a
 * probe engine and looking for the values it loaded.
 */
import { UnicornEngine } from '../unicorn/engine.js';
import { REG, UC_MODE_64, UC_PROT_ALL } from '../unicorn/constants.js';
import { contextLayout } from './context-layout.js';
import { cachedProbe, hasIntFields } from '../unicorn/probe-cache.js';

/** UC_HOOK_INTR numbers at and above this are SVM exits (QEMU's EXCP_VMEXIT + exit code). */
export const EXCP_VMEXIT = 0x100;
export const SVM_EXIT_MSR = 0x7c;
/** VMCB control area: host-physical address of the MSR permission map. */
export const VMCB_MSRPM_BASE_PA = 0x48;
/** The permission map covers three 8K-MSR ranges, 2 bits each (read, write). */
export const MSRPM_BYTES = 0x1800;
export const MSRPM_FRAMES = 2;

const HF_GUEST = 1 << 21;
const INTERCEPT_MSR_PROT = 1n << BigInt(SVM_EXIT_MSR - 0x60);
const INTERCEPT_VMRUN = 1n << 32n;
const MSR_EFER = 0xc0000080;
const EFER_SVME = 1n << 12n;

const RANGES = [
  { first: 0x0000_0000, byte: 0 },
  { first: 0xc000_0000, byte: 0x800 },
  { first: 0xc001_0000, byte: 0x1000 },
] as const;

/** Byte and bit of an MSR's read-intercept bit (its write bit is the next one), or null outside the map: such MSRs always exit. */
export function msrpmPosition(index: number): { byte: number; bit: number } | null {
  const msr = index >>> 0;
  for (const r of RANGES) {
    const n = msr - r.first;
    if (n >= 0 && n < 0x2000) return { byte: r.byte + (n >> 2), bit: (n & 3) * 2 };
  }
  return null;
}

/** Sets or clears whether reads and writes of one MSR exit. */
export function setMsrIntercept(map: Uint8Array, index: number, read: boolean, write: boolean): void {
  const p = msrpmPosition(index);
  if (!p) throw new RangeError(`MSR 0x${index.toString(16)} is outside the permission map`);
  let b = map[p.byte]! & ~(3 << p.bit);
  if (read) b |= 1 << p.bit;
  if (write) b |= 2 << p.bit;
  map[p.byte] = b;
}

/**
 * A permission map where every MSR exits except `passThrough` (both
 * directions), reads of `readPassThrough`, and EFER reads: our page walker
 * reads EFER through the Unicorn API on every TLB fill, where an intercept
 * cannot be taken.
 */
export function newPermissionMap(passThrough: readonly number[], readPassThrough: readonly number[] = []): Uint8Array {
  const map = new Uint8Array(MSRPM_BYTES).fill(0xff);
  setMsrIntercept(map, MSR_EFER, false, true);
  for (const msr of passThrough) setMsrIntercept(map, msr, false, false);
  for (const msr of readPassThrough) setMsrIntercept(map, msr, false, true);
  return map;
}

export interface SvmLayout {
  /** Context offset of env->vm_vmcb (u64). */
  vmcb: number;
  /** Context offset of env->intercept (u64). */
  intercept: number;
}

let cached: SvmLayout | string | undefined;

/** Where the SVM fields live in the context blob, or why MSR exits are unavailable in this build. */
export function svmLayout(): SvmLayout | string {
  cached ??= cachedProbe('svm', hasIntFields('vmcb', 'intercept'), discover, (v) => typeof v !== 'string');
  return cached;
}

/** Puts a context into SVM guest mode with MSR intercepts that use the control area at `vmcbHpa`. */
export function armMsrIntercept(blob: Uint8Array, layout: SvmLayout, vmcbHpa: number): void {
  const dv = new DataView(blob.buffer, blob.byteOffset, blob.byteLength);
  const h = contextLayout().hflags;
  dv.setUint32(h, dv.getUint32(h, true) | HF_GUEST, true);
  dv.setBigUint64(layout.vmcb, BigInt(vmcbHpa), true);
  dv.setBigUint64(layout.intercept, INTERCEPT_MSR_PROT, true);
}

const PROBE = { host: 0x1000, guest: 0x2000, vmcb: 0x3000, msrpm: 0x4000 } as const;

function discover(): SvmLayout | string {
  const e = new UnicornEngine(UC_MODE_64);
  try {
    const ram = new Uint8Array(new SharedArrayBuffer(0x10000));
    const dv = new DataView(ram.buffer);
    e.mapHost(0, ram, UC_PROT_ALL);
    ram.set([0x0f, 0x01, 0xd8, 0xf4], PROBE.host); // vmrun; hlt
    ram.set([0xb9, 0x10, 0, 0, 0, 0x0f, 0x32, 0xf4], PROBE.guest); // mov ecx, 0x10 (TSC); rdmsr; hlt
    const intercept = INTERCEPT_MSR_PROT | INTERCEPT_VMRUN;
    dv.setBigUint64(PROBE.vmcb + 12, intercept, true);
    dv.setBigUint64(PROBE.vmcb + VMCB_MSRPM_BASE_PA, BigInt(PROBE.msrpm), true);
    ram.fill(0xff, PROBE.msrpm, PROBE.msrpm + MSRPM_BYTES);
    // Guest state: flat 32-bit protected mode, paging off (VMCB save area at +0x400).
    const save = PROBE.vmcb + 0x400;
    const seg = (off: number, selector: number, attrib: number): void => {
      dv.setUint16(save + off, selector, true);
      dv.setUint16(save + off + 2, attrib, true);
      dv.setUint32(save + off + 4, 0xffff_ffff, true);
    };
    seg(0x10, 0x08, 0xc9b);
    for (const off of [0x00, 0x20, 0x30]) seg(off, 0x10, 0xc93);
    dv.setBigUint64(save + 0xd0, EFER_SVME, true);
    dv.setBigUint64(save + 0x158, 0x11n, true);
    dv.setBigUint64(save + 0x170, 2n, true);
    dv.setBigUint64(save + 0x178, BigInt(PROBE.guest), true);
    dv.setBigUint64(save + 0x1d8, 0x8000n, true);
    let seen = -1;
    e.onInterrupt((n) => {
      seen = n;
      e.stop();
    });
    e.writeMsr(MSR_EFER, e.readMsr(MSR_EFER) | EFER_SVME);
    if ((e.readMsr(MSR_EFER) & EFER_SVME) === 0n) return 'this Unicorn build has no SVM (EFER.SVME does not stick)';
    e.writeReg(REG.RAX, PROBE.vmcb);
    e.start(BigInt(PROBE.host));
    if (seen !== EXCP_VMEXIT + SVM_EXIT_MSR) return `SVM probe: RDMSR raised ${seen === -1 ? 'nothing' : `0x${seen.toString(16)}`}, not an MSR exit`;
    if (e.readReg(REG.RIP) !== BigInt(PROBE.guest + 5)) return `SVM probe: MSR exit at 0x${e.readReg(REG.RIP).toString(16)}, not on the RDMSR`;
    const blob = e.saveContext();
    const b = new DataView(blob.buffer);
    const find = (v: bigint): number[] => {
      const hits: number[] = [];
      for (let i = 0; i + 8 <= blob.length; i += 4) if (b.getBigUint64(i, true) === v) hits.push(i);
      return hits;
    };
    const vmcbHits = find(BigInt(PROBE.vmcb));
    const interceptHits = find(intercept);
    if (interceptHits.length !== 1) return `SVM probe: intercept mask found ${interceptHits.length} times in the context`;
    // QEMU's CPUX86State: vm_vmcb, tsc_offset, intercept.
    const vmcb = interceptHits[0]! - 16;
    if (!vmcbHits.includes(vmcb)) return 'SVM probe: vm_vmcb not found before the intercept mask';
    if ((b.getUint32(contextLayout().hflags, true) & HF_GUEST) === 0) return 'SVM probe: hflags has no guest-mode bit after VMRUN';
    return { vmcb, intercept: interceptHits[0]! };
  } finally {
    e.close();
  }
}

/** The bytes an intercept check reads: the control area's map pointer and the map itself. */
export interface InterceptMemory {
  readU8(paddr: number): number;
  readU64(paddr: number): bigint;
  writeBytes(paddr: number, data: Uint8Array): void;
}

/**
 * Runs `fn` (a uc_reg_read/write of the MSR) with this MSR's intercept lifted:
 * inside the Unicorn API call an intercept would long-jump out of a run that
 * does not exist (the process dies). MSRs outside the map always exit, so
 * `fn` is not called for them and the result is undefined.
 */
export function withInterceptLifted<T>(mem: InterceptMemory, vmcbHpa: number, index: number, write: boolean, fn: () => T): T | undefined {
  const p = msrpmPosition(index);
  if (!p) return undefined;
  const at = Number(mem.readU64(vmcbHpa + VMCB_MSRPM_BASE_PA)) + p.byte;
  const saved = mem.readU8(at);
  mem.writeBytes(at, Uint8Array.of(saved & ~((write ? 2 : 1) << p.bit)));
  try {
    return fn();
  } finally {
    mem.writeBytes(at, Uint8Array.of(saved));
  }
}
