/**
 * The time-stamp counter on virtual time. Unicorn's RDTSC returns the host's
 * TSC (cpu_get_tsc -> cpu_get_ticks), while the PIT, the LAPIC timer and the
 * RTC follow the machine's virtual time, so a guest that calibrated one
 * against the other got 100+ GHz and Linux called the TSC unstable.
 *
 * A vCPU in SVM guest mode (msr-intercept.ts) exits on RDTSC when the
 * context's intercept word has INTERCEPT_RDTSC: QEMU's helper_rdtsc checks it
 * after the CR4.TSD check, with RIP on the instruction. Unicorn 2.1's
 * helper_rdtscp calls helper_rdtsc, so RDTSCP exits with the same code; the
 * bytes at RIP tell them apart. The answer is the VM clock's nanoseconds at
 * TSC_HZ plus a per-vCPU offset that IA32_TSC writes set (as KVM's
 * tsc_offset), so the TSC is as deterministic as the clock, never goes back,
 * agrees across the vCPUs of a VM, and travels with the VM clock in its state.
 */
import type { SvmLayout } from './msr-intercept.js';

/**
 * 2 GHz: an exact 2 ticks per virtual nanosecond (no rounding, so no drift
 * and no step backwards), and a frequency in the range QEMU/KVM guests see.
 * CPUID 0x15 states it as a 25 MHz crystal (Intel's usual) times 80.
 */
export const TSC_HZ = 2_000_000_000;
/**
 * Virtual time one trapped RDTSC/RDTSCP costs the guest (ns), as a VM exit costs a guest on
 * hardware (about a microsecond). Without it a loop that waits for the TSC to pass a value
 * (Linux's delay_tsc, check_timer, an AP's calibrate_delay) gains ~10 ns of virtual time per
 * 12 us host exit, so two vCPUs doing so on one pCPU crawled at 1 ms of guest time per second.
 * Both the TSC and the PIT follow the same virtual clock, so calibrations stay exact.
 */
export const RDTSC_EXIT_NS = 1000;
export const TSC_CRYSTAL_HZ = 25_000_000;
export const TSC_PER_NS = BigInt(TSC_HZ / 1e9);

export const MSR_TSC_AUX = 0xc0000103;
export const MSR_TSC_DEADLINE = 0x6e0;

export const SVM_EXIT_RDTSC = 0x6e;
export const SVM_EXIT_RDTSCP = 0x87;
/** env->intercept bits (exit code - 0x60, QEMU's INTERCEPT_* numbering). */
const INTERCEPT_RDTSC = 1n << BigInt(SVM_EXIT_RDTSC - 0x60);
const INTERCEPT_RDTSCP = 1n << BigInt(SVM_EXIT_RDTSCP - 0x60);

const U64 = (1n << 64n) - 1n;

/** The TSC a vCPU reads `ns` into its VM's virtual time, with `offset` (wraps at 2^64, as the MSR does). */
export function tscAt(ns: number, offset: bigint): bigint {
  return (BigInt(Math.floor(ns)) * TSC_PER_NS + offset) & U64;
}

/** The offset that makes the TSC read `value` at `ns` (a WRMSR to IA32_TSC). */
export function tscOffsetFor(value: bigint, ns: number): bigint {
  return BigInt.asIntN(64, value - BigInt(Math.floor(ns)) * TSC_PER_NS);
}

/** The virtual time at which the TSC (with `offset`) reaches `value`: a TSC-deadline timer's due time. */
export function nsAtTsc(value: bigint, offset: bigint): number {
  const ticks = value - offset;
  if (ticks <= 0n) return 0;
  // Ceiling: the timer fires once the TSC has reached the value, never before.
  return Number((ticks + TSC_PER_NS - 1n) / TSC_PER_NS);
}

/** Adds the RDTSC/RDTSCP intercepts to a context already in SVM guest mode (armMsrIntercept). */
export function armTscIntercept(blob: Uint8Array, svm: SvmLayout): void {
  const dv = new DataView(blob.buffer, blob.byteOffset, blob.byteLength);
  dv.setBigUint64(svm.intercept, dv.getBigUint64(svm.intercept, true) | INTERCEPT_RDTSC | INTERCEPT_RDTSCP, true);
}

const LEGACY_PREFIXES = new Set([0x26, 0x2e, 0x36, 0x3e, 0x64, 0x65, 0x66, 0x67, 0xf0, 0xf2, 0xf3]);

/** RDTSC (0F 31) or RDTSCP (0F 01 F9) at the start of `bytes`, with its length; null if it is neither. */
export function decodeRdtsc(bytes: Uint8Array, long: boolean): { rdtscp: boolean; length: number } | null {
  let i = 0;
  while (i < bytes.length && i < 14 && (LEGACY_PREFIXES.has(bytes[i]!) || (long && (bytes[i]! & 0xf0) === 0x40))) i++;
  if (bytes[i] !== 0x0f) return null;
  if (bytes[i + 1] === 0x31) return { rdtscp: false, length: i + 2 };
  if (bytes[i + 1] === 0x01 && bytes[i + 2] === 0xf9) return { rdtscp: true, length: i + 3 };
  return null;
}
