/**
 * MOV to CR4 of hypervisor vCPUs, checked by us (SDM Vol. 2 "MOV—Move to/from Control Registers").
 *
 * Unicorn's QEMU 5 core takes any value: it truncates CR4 to 32 bits and never raises #GP for a
 * reserved bit, so a guest could set CR4.OSXSAVE on a CPU whose CPUID has no XSAVE, or 0xffffffff
 * (kvm-unit-tests' idt_test and xsave test both expect #GP). vCPU contexts run in SVM guest mode
 * (msr-intercept.ts), and QEMU checks the VMCB's CR write intercept word (env->intercept_cr_write,
 * right after env->intercept) in helper_write_crN before changing anything: with bit 4 set, every
 * MOV to CR4 exits to us with RIP on the instruction, and we check and apply it here. The reserved
 * bits follow our CPUID, as in QEMU 7.2's cr4_reserved_bits() and KVM. CR8 exits too, when the
 * host has a LAPIC to answer it (armCr8Intercept).
 */
import type { SvmLayout } from './msr-intercept.js';
import type { CpuidResult } from './cpuid.js';
import { CR4, EFER } from './registers.js';
import { decodeMovSpecialRegister } from './mov-special-register.js';

export const SVM_EXIT_READ_CR0 = 0x00;
export const SVM_EXIT_WRITE_CR0 = 0x10;
export const SVM_EXIT_WRITE_CR4 = SVM_EXIT_WRITE_CR0 + 4;
export const SVM_EXIT_READ_CR8 = SVM_EXIT_READ_CR0 + 8;
export const SVM_EXIT_WRITE_CR8 = SVM_EXIT_WRITE_CR0 + 8;
/** env->intercept_cr_read / _write: u16 each, after env->intercept (u64). */
const CR_READ_AFTER_INTERCEPT = 8;
const CR_WRITE_AFTER_INTERCEPT = 10;

const PKE = 1n << 22n;
const PKS = 1n << 24n;
/** Bits every CPU we model accepts (QEMU's CR4_RESERVED_MASK complement, less the CPUID-gated ones). */
const ALWAYS = CR4.VME | CR4.PVI | CR4.TSD | CR4.DE | CR4.PSE | CR4.PAE | CR4.MCE | CR4.PGE | CR4.PCE | CR4.OSFXSR | CR4.OSXMMEXCPT;

/** Intercepts every MOV to CR4 of a context already in SVM guest mode. */
export function armCr4WriteIntercept(blob: Uint8Array, svm: SvmLayout): void {
  const dv = new DataView(blob.buffer, blob.byteOffset, blob.byteLength);
  const at = svm.intercept + CR_WRITE_AFTER_INTERCEPT;
  dv.setUint16(at, dv.getUint16(at, true) | (1 << 4), true);
}

/**
 * Intercepts MOV from/to CR8 too. Unicorn's CR8 is not the LAPIC's TPR (its APIC is a stub:
 * reads give 0 outside VINTR mode), so the host answers CR8 from its LAPIC (SDM Vol. 3 10.8.6.1:
 * CR8[3:0] = TPR[7:4]).
 */
export function armCr8Intercept(blob: Uint8Array, svm: SvmLayout): void {
  const dv = new DataView(blob.buffer, blob.byteOffset, blob.byteLength);
  for (const off of [CR_READ_AFTER_INTERCEPT, CR_WRITE_AFTER_INTERCEPT]) {
    const at = svm.intercept + off;
    dv.setUint16(at, dv.getUint16(at, true) | (1 << 8), true);
  }
}

/** The CR4 bits a guest may set, from the CPUID it sees (leaf 1 ECX, leaf 7.0 EBX/ECX). */
export function cr4AllowedBits(cpuid: (leaf: number, subleaf: number) => CpuidResult): bigint {
  const max = cpuid(0, 0).eax >>> 0;
  const l1 = cpuid(1, 0).ecx;
  const l7 = max >= 7 ? cpuid(7, 0) : { eax: 0, ebx: 0, ecx: 0, edx: 0 };
  const has = (reg: number, bit: number): boolean => ((reg >>> bit) & 1) === 1;
  let allowed = ALWAYS;
  if (has(l1, 26)) allowed |= CR4.OSXSAVE;
  if (has(l1, 17)) allowed |= CR4.PCIDE;
  if (has(l7.ebx, 0)) allowed |= CR4.FSGSBASE;
  if (has(l7.ebx, 7)) allowed |= CR4.SMEP;
  if (has(l7.ebx, 20)) allowed |= CR4.SMAP;
  if (has(l7.ecx, 2)) allowed |= CR4.UMIP;
  if (has(l7.ecx, 3)) allowed |= PKE;
  if (has(l7.ecx, 16)) allowed |= CR4.LA57;
  if (has(l7.ecx, 31)) allowed |= PKS;
  return allowed;
}

/** Why a MOV of `value` to CR4 raises #GP(0), or null when it is allowed. */
export function cr4WriteFault(value: bigint, now: { cr3: bigint; cr4: bigint; efer: bigint }, allowed: bigint): string | null {
  const reserved = value & ~allowed;
  if (reserved) return `MOV to CR4 0x${value.toString(16)}: reserved bits 0x${reserved.toString(16)} (not in this CPU's CPUID)`;
  const long = (now.efer & EFER.LMA) !== 0n;
  if (long && !(value & CR4.PAE)) return 'MOV to CR4 clears PAE in IA-32e mode';
  if (long && (value ^ now.cr4) & CR4.LA57) return 'MOV to CR4 changes LA57 in IA-32e mode';
  if (value & CR4.PCIDE && !(now.cr4 & CR4.PCIDE) && (!long || now.cr3 & 0xfffn)) return 'MOV to CR4 sets PCIDE outside IA-32e mode or with CR3[11:0] != 0';
  return null;
}

/** A decoded MOV to/from CRn (0F 22 /r, 0F 20 /r): mod is ignored, as on hardware; REX.R selects CR8-CR15. */
export interface MovCr {
  write: boolean;
  cr: number;
  /** General register number 0-15 (RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI, R8-R15). */
  gpr: number;
  length: number;
}

export function decodeMovCr(bytes: Uint8Array, long: boolean): MovCr | null {
  const m = decodeMovSpecialRegister(bytes, long, 0x20, 0x22);
  if (!m) return null;
  // AMD's alternative encoding of CR8: LOCK MOV CR0.
  const cr = m.lock && m.reg === 0 ? 8 : m.reg;
  return { write: m.write, cr, gpr: m.gpr, length: m.length };
}
