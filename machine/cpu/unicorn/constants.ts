/** Unicorn 2.1 ABI constants (values from unicorn/x86.h and unicorn.h of 2.1.1). */

export const UC_ARCH_X86 = 4;
export const UC_MODE_16 = 1 << 1;
export const UC_MODE_32 = 1 << 2;
export const UC_MODE_64 = 1 << 3;

export const UC_PROT_READ = 1;
export const UC_PROT_WRITE = 2;
export const UC_PROT_EXEC = 4;
export const UC_PROT_ALL = 7;

export const UC_HOOK_INTR = 1 << 0;
export const UC_HOOK_INSN = 1 << 1;
export const UC_HOOK_BLOCK = 1 << 3;
export const UC_HOOK_MEM_READ_UNMAPPED = 1 << 4;
export const UC_HOOK_MEM_WRITE_UNMAPPED = 1 << 5;
export const UC_HOOK_MEM_FETCH_UNMAPPED = 1 << 6;
export const UC_HOOK_MEM_WRITE_PROT = 1 << 8;
export const UC_HOOK_MEM_READ = 1 << 10;
export const UC_HOOK_MEM_WRITE = 1 << 11;
export const UC_HOOK_INSN_INVALID = 1 << 14;
export const UC_HOOK_TLB_FILL = 1 << 17;

export const UC_MEM_READ = 16;
export const UC_MEM_WRITE = 17;
export const UC_MEM_FETCH = 18;

export const UC_TLB_VIRTUAL = 1;

/** uc_ctl codes, already combined with their IO/argument-count bits. */
export const UC_CTL_TLB_TYPE_WRITE = 0x4400000c;
export const UC_CTL_TLB_FLUSH = 0x4000000b;
export const UC_CTL_TB_REMOVE_CACHE = 0x48000009;
export const UC_CTL_TB_FLUSH = 0x4000000a;
/** UC_CTL_WRITE(UC_CTL_TCG_BUFFER_SIZE, 1): the translated-code buffer, set before first use. */
export const UC_CTL_TCG_BUFFER_SIZE_WRITE = 0x4400000d;
export const UC_CTL_TCG_BUFFER_SIZE_READ = 0x8400000d;
export const UC_CTL_CPU_MODEL_WRITE = 0x44000007;
/** UC_CTL_WRITE(UC_CTL_UC_USE_EXITS, 1): `until` is ignored; only the (here empty) exit list stops a run. */
export const UC_CTL_USE_EXITS_WRITE = 0x44000004;

export const UC_CPU_X86_QEMU64 = 0;

export enum UcErr {
  OK = 0,
  NOMEM = 1,
  ARCH = 2,
  HANDLE = 3,
  MODE = 4,
  VERSION = 5,
  READ_UNMAPPED = 6,
  WRITE_UNMAPPED = 7,
  FETCH_UNMAPPED = 8,
  HOOK = 9,
  INSN_INVALID = 10,
  MAP = 11,
  WRITE_PROT = 12,
  READ_PROT = 13,
  FETCH_PROT = 14,
  ARG = 15,
  READ_UNALIGNED = 16,
  WRITE_UNALIGNED = 17,
  FETCH_UNALIGNED = 18,
  HOOK_EXIST = 19,
  RESOURCE = 20,
  EXCEPTION = 21,
  OVERFLOW = 22,
}

export const REG = {
  RAX: 35,
  RBX: 37,
  RCX: 38,
  RDX: 40,
  RSI: 43,
  RDI: 39,
  RBP: 36,
  RSP: 44,
  R8: 106,
  R9: 107,
  R10: 108,
  R11: 109,
  R12: 110,
  R13: 111,
  R14: 112,
  R15: 113,
  RIP: 41,
  EIP: 26,
  IP: 34,
  EAX: 19,
  EBX: 21,
  ECX: 22,
  EDX: 24,
  ESI: 29,
  EDI: 23,
  EBP: 20,
  ESP: 30,
  EFLAGS: 25,
  RFLAGS: 253,
  CS: 11,
  DS: 17,
  ES: 28,
  FS: 32,
  GS: 33,
  SS: 49,
  CR0: 50,
  CR2: 52,
  CR3: 53,
  CR4: 54,
  CR8: 58,
  GDTR: 243,
  IDTR: 242,
  LDTR: 244,
  TR: 245,
  MSR: 248,
  FS_BASE: 250,
  GS_BASE: 251,
} as const;

export const INS = {
  IN: 218,
  OUT: 500,
  CPUID: 113,
  SYSCALL: 699,
  SYSENTER: 700,
  RDMSR: 604,
  WRMSR: 1305,
  RDTSC: 608,
} as const;
