/**
 * The CPUID the machine advertises. Unicorn's own table lacks MONITOR and,
 * in leaf 1 EDX, FPU/TSC/APIC, so every leaf is ours. The identity (vendor,
 * family/model/stepping) is QEMU's default qemu64 model, so software that
 * prints it behaves as under the reference oracle; the feature bits are the
 * ones the emulated CPU really executes (the engine's model is in cpu-model.ts;
 * test/cpu/cpuid-features.test.ts runs one instruction of every advertised
 * flag in ring 0 and ring 3), plus MONITOR/MWAIT, which we emulate.
 * Not advertised although the engine runs them: XSAVE (context save/restore
 * and leaf 0xD would have to follow XCR0), SSE4A (the engine does not check it,
 * so it would "run" on any model), SVM (ours, for MSR exits).
 */
import { TSC_CRYSTAL_HZ, TSC_HZ } from './tsc.js';

/** The LAPIC timer's input clock (lapic.ts default busHz). */
const LAPIC_BUS_MHZ = 1000;

/** MAXPHYADDR (CPUID 0x80000008 EAX[7:0]): page-table address bits above it are reserved (paging.ts). */
export const MAX_PHYS_ADDR_BITS = 40;

export interface CpuidResult {
  eax: number;
  ebx: number;
  ecx: number;
  edx: number;
}

export interface CpuidConfig {
  apicId: number;
  logicalCpus: number;
  /** Set the hypervisor-present bit (leaf 1 ECX[31]) for guests of our hypervisor. */
  hypervisor?: boolean;
  /** IA32_APIC_BASE.EN of this CPU's LAPIC: leaf 1 EDX.APIC follows it (SDM Vol. 3 11.4.3). */
  apicEnabled?: () => boolean;
}

const str4 = (s: string): number => (s.charCodeAt(0) | (s.charCodeAt(1) << 8) | (s.charCodeAt(2) << 16) | (s.charCodeAt(3) << 24)) >>> 0;
const BRAND = 'Firmament virtual x86-64 CPU'.padEnd(48, '\0');

/** Leaf 0x80000001 ECX and EDX. */
export const EXT1_ECX = { LAHF_LM: 0, ABM: 5 } as const;
export const EXT1_EDX = { SYSCALL: 11, NX: 20, PDPE1GB: 26, RDTSCP: 27, LM: 29 } as const;

const bits = (...n: number[]): number => n.reduce((acc, b) => (acc | (1 << b)) >>> 0, 0);

export const LEAF1_ECX = { SSE3: 0, PCLMULQDQ: 1, MONITOR: 3, SSSE3: 9, CX16: 13, SSE41: 19, SSE42: 20, POPCNT: 23, TSC_DEADLINE: 24, AES: 25, HYPERVISOR: 31 } as const;
export const LEAF1_EDX = { FPU: 0, VME: 1, DE: 2, PSE: 3, TSC: 4, MSR: 5, PAE: 6, MCE: 7, CX8: 8, APIC: 9, SEP: 11, MTRR: 12, PGE: 13, MCA: 14, CMOV: 15, PAT: 16, PSE36: 17, CLFSH: 19, MMX: 23, FXSR: 24, SSE: 25, SSE2: 26 } as const;

export function cpuid(leaf: number, subleaf: number, cfg: CpuidConfig): CpuidResult {
  const zero = { eax: 0, ebx: 0, ecx: 0, edx: 0 };
  switch (leaf >>> 0) {
    case 0:
      // Leaves 0x15/0x16 only where the TSC runs at their rate (VM guests: tsc.ts).
      return { eax: cfg.hypervisor ? 0x16 : 0xd, ebx: str4('Auth'), edx: str4('enti'), ecx: str4('cAMD') };
    case 1: {
      const e = LEAF1_EDX;
      const c = LEAF1_ECX;
      let ecx = bits(c.SSE3, c.PCLMULQDQ, c.MONITOR, c.SSSE3, c.CX16, c.SSE41, c.SSE42, c.POPCNT, c.AES);
      // TSC-deadline timer: IA32_TSC_DEADLINE is the hypervisor's (msr-exits.ts), so only for its guests.
      if (cfg.hypervisor) ecx = (ecx | (1 << c.HYPERVISOR) | (1 << c.TSC_DEADLINE)) >>> 0;
      return {
        // qemu64: family 15, model 107, stepping 1
        eax: 0x00060fb1,
        ebx: ((cfg.apicId & 0xff) << 24) | ((cfg.logicalCpus & 0xff) << 16) | (8 << 8),
        ecx,
        edx: (bits(e.FPU, e.DE, e.PSE, e.TSC, e.MSR, e.PAE, e.MCE, e.CX8, e.SEP, e.MTRR, e.PGE, e.MCA, e.CMOV, e.PAT, e.PSE36, e.CLFSH, e.MMX, e.FXSR, e.SSE, e.SSE2) | (cfg.apicEnabled?.() === false ? 0 : 1 << e.APIC)) >>> 0,
      };
    }
    case 5:
      // MONITOR/MWAIT: 64-byte lines; EMX (enumerate extensions) and IBE (interrupts break MWAIT even when masked).
      return { eax: 64, ebx: 64, ecx: 0b11, edx: 0 };
    case 0xb:
      // x2APIC topology: one thread per core.
      return subleaf === 0 ? { eax: 0, ebx: 1, ecx: 0x100, edx: cfg.apicId } : { eax: 0, ebx: 0, ecx: subleaf & 0xff, edx: cfg.apicId };
    case 0x15:
      if (!cfg.hypervisor) return zero;
      // TSC = crystal * EBX / EAX (tsc.ts: the TSC runs on virtual time at this fixed rate).
      return { eax: 1, ebx: TSC_HZ / TSC_CRYSTAL_HZ, ecx: TSC_CRYSTAL_HZ, edx: 0 };
    case 0x16:
      if (!cfg.hypervisor) return zero;
      // Base and maximum frequency in MHz (one fixed rate); bus (LAPIC timer input): 1000 MHz.
      return { eax: TSC_HZ / 1e6, ebx: TSC_HZ / 1e6, ecx: LAPIC_BUS_MHZ, edx: 0 };
    case 0x80000000:
      return { eax: 0x80000008, ebx: str4('Auth'), edx: str4('enti'), ecx: str4('cAMD') };
    case 0x80000001:
      // LAHF/SAHF in 64-bit, LZCNT; SYSCALL, NX, 1 GiB pages, RDTSCP, long mode.
      return { eax: 0, ebx: 0, ecx: bits(EXT1_ECX.LAHF_LM, EXT1_ECX.ABM), edx: bits(EXT1_EDX.SYSCALL, EXT1_EDX.NX, EXT1_EDX.PDPE1GB, EXT1_EDX.RDTSCP, EXT1_EDX.LM) };
    case 0x80000002:
    case 0x80000003:
    case 0x80000004: {
      const i = (leaf - 0x80000002) * 16;
      const w = (k: number): number => str4(BRAND.slice(i + k * 4, i + k * 4 + 4));
      return { eax: w(0), ebx: w(1), ecx: w(2), edx: w(3) };
    }
    case 0x80000007:
      // Invariant TSC: in VMs it runs at TSC_HZ on virtual time in every state, HLT and MWAIT
      // included. The bare machine's RDTSC is the engine's, on host time: not invariant.
      return { eax: 0, ebx: 0, ecx: 0, edx: cfg.hypervisor ? 1 << 8 : 0 };
    case 0x80000008:
      // 40 physical, 48 virtual address bits.
      return { eax: 0x3000 | MAX_PHYS_ADDR_BITS, ebx: 0, ecx: 0, edx: 0 };
    default:
      return zero;
  }
}
