/** x86 control-register, EFER and RFLAGS bits, and decoders shared by the CPU, CLI and TUI. */

export const CR0 = { PE: 1n << 0n, MP: 1n << 1n, EM: 1n << 2n, TS: 1n << 3n, ET: 1n << 4n, NE: 1n << 5n, WP: 1n << 16n, AM: 1n << 18n, NW: 1n << 29n, CD: 1n << 30n, PG: 1n << 31n } as const;
export const CR4 = { VME: 1n << 0n, PVI: 1n << 1n, TSD: 1n << 2n, DE: 1n << 3n, PSE: 1n << 4n, PAE: 1n << 5n, MCE: 1n << 6n, PGE: 1n << 7n, PCE: 1n << 8n, OSFXSR: 1n << 9n, OSXMMEXCPT: 1n << 10n, UMIP: 1n << 11n, LA57: 1n << 12n, VMXE: 1n << 13n, FSGSBASE: 1n << 16n, PCIDE: 1n << 17n, OSXSAVE: 1n << 18n, SMEP: 1n << 20n, SMAP: 1n << 21n } as const;
export const EFER = { SCE: 1n << 0n, LME: 1n << 8n, LMA: 1n << 10n, NXE: 1n << 11n } as const;
export const RFLAGS = { CF: 1 << 0, PF: 1 << 2, AF: 1 << 4, ZF: 1 << 6, SF: 1 << 7, TF: 1 << 8, IF: 1 << 9, DF: 1 << 10, OF: 1 << 11, NT: 1 << 14, RF: 1 << 16, VM: 1 << 17, AC: 1 << 18, VIF: 1 << 19, VIP: 1 << 20, ID: 1 << 21 } as const;

export const MSR = {
  TSC: 0x10,
  APIC_BASE: 0x1b,
  MISC_ENABLE: 0x1a0,
  EFER: 0xc0000080,
  STAR: 0xc0000081,
  LSTAR: 0xc0000082,
  CSTAR: 0xc0000083,
  SFMASK: 0xc0000084,
  FS_BASE: 0xc0000100,
  GS_BASE: 0xc0000101,
  KERNEL_GS_BASE: 0xc0000102,
} as const;

export type CpuMode = 'real' | 'protected' | 'long' | 'compatibility';

export function cpuMode(cr0: bigint, efer: bigint, csFlags: number): CpuMode {
  if ((cr0 & CR0.PE) === 0n) return 'real';
  if ((efer & EFER.LMA) !== 0n) return (csFlags & (1 << 21)) !== 0 ? 'long' : 'compatibility';
  return 'protected';
}

/** Width of code in a mode: for the disassembler. */
export function codeBits(mode: CpuMode, csFlags: number): 16 | 32 | 64 {
  if (mode === 'long') return 64;
  if (mode === 'real') return 16;
  return (csFlags & (1 << 22)) !== 0 ? 32 : 16;
}

function names(value: bigint, table: Record<string, bigint>): string[] {
  return Object.entries(table)
    .filter(([, bit]) => (value & bit) !== 0n)
    .map(([n]) => n);
}

export const decodeCr0 = (v: bigint): string[] => names(v, CR0);
export const decodeCr4 = (v: bigint): string[] => names(v, CR4);
export const decodeEfer = (v: bigint): string[] => names(v, EFER);

export function decodeRflags(v: number): string[] {
  const out = Object.entries(RFLAGS)
    .filter(([, bit]) => (v & bit) !== 0)
    .map(([n]) => n);
  out.push(`IOPL=${(v >> 12) & 3}`);
  return out;
}
