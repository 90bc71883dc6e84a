/**
 * Which exception a non-canonical memory access raises in 64-bit mode: the
 * SDM makes it #SS(0) when the access goes through the SS segment (PUSH,
 * POP, CALL, RET, LEAVE, ENTER, an operand based on RSP or RBP, an SS:
 * override) and #GP(0) otherwise. QEMU's TCG (and so Unicorn) raises #GP for
 * both; our TLB fill sees only the linear address, so the instruction is
 * decoded here to find the segment.
 *
 * What is not told apart (left as #GP): VEX/EVEX-encoded instructions, string
 * instructions with an SS: override, and IRET/INT frames (event delivery
 * checks its own stack).
 */
import { isCanonical } from './paging.js';

export const NON_CANONICAL_SS = 12;
export const NON_CANONICAL_GP = 13;

export interface StackRegisters {
  rsp: bigint;
  rbp: bigint;
}

const SEGMENT_PREFIXES = new Set([0x26, 0x2e, 0x36, 0x3e, 0x64, 0x65]);
const OTHER_PREFIXES = new Set([0x66, 0x67, 0xf0, 0xf2, 0xf3]);
const SS_PREFIX = 0x36;

/** One-byte opcodes with a ModRM byte (64-bit mode; 0xC4/0xC5 are VEX there and left out). */
const ONE_BYTE_MODRM = new Set<number>([
  ...[0x00, 0x08, 0x10, 0x18, 0x20, 0x28, 0x30, 0x38].flatMap((b) => [b, b + 1, b + 2, b + 3]),
  0x63, 0x69, 0x6b,
  ...Array.from({ length: 16 }, (_, i) => 0x80 + i),
  0xc0, 0xc1, 0xc6, 0xc7,
  0xd0, 0xd1, 0xd2, 0xd3, 0xd8, 0xd9, 0xda, 0xdb, 0xdc, 0xdd, 0xde, 0xdf,
  0xf6, 0xf7, 0xfe, 0xff,
]);
/** Two-byte (0F xx) opcodes without a ModRM byte; the others have one. */
const TWO_BYTE_NO_MODRM = new Set<number>([
  0x05, 0x06, 0x07, 0x08, 0x09, 0x0b, 0x0e, 0x30, 0x31, 0x32, 0x33, 0x34, 0x35, 0x37, 0x77,
  ...Array.from({ length: 16 }, (_, i) => 0x80 + i),
  0xa0, 0xa1, 0xa2, 0xa8, 0xa9, 0xaa,
  ...Array.from({ length: 8 }, (_, i) => 0xc8 + i),
]);

/** Implicit stack accesses below RSP (pushes) or at RSP (pops); LEAVE reads at RBP. */
function implicitStack(op: number, twoByte: boolean, reg: number | null): 'push' | 'pop' | 'leave' | null {
  if (twoByte) return op === 0xa0 || op === 0xa8 ? 'push' : op === 0xa1 || op === 0xa9 ? 'pop' : null;
  if ((op >= 0x50 && op <= 0x57) || op === 0x68 || op === 0x6a || op === 0x9c || op === 0xe8 || op === 0xc8) return 'push';
  if ((op >= 0x58 && op <= 0x5f) || op === 0x9d || op === 0xc2 || op === 0xc3) return 'pop';
  if (op === 0xc9) return 'leave';
  if (op === 0xff && (reg === 2 || reg === 6)) return 'push'; // CALL r/m, PUSH r/m
  if (op === 0x8f && reg === 0) return 'pop'; // POP r/m
  return null;
}

/**
 * The vector (#SS or #GP) for the non-canonical access of the instruction
 * whose first bytes are `bytes`, in 64-bit mode.
 */
export function nonCanonicalVector(bytes: Uint8Array, regs: StackRegisters): typeof NON_CANONICAL_SS | typeof NON_CANONICAL_GP {
  let i = 0;
  let segment: number | null = null;
  let rexB = false;
  for (; i < bytes.length && i < 14; i++) {
    const b = bytes[i]!;
    if (SEGMENT_PREFIXES.has(b)) segment = b;
    else if (!OTHER_PREFIXES.has(b)) break;
  }
  if (i < bytes.length && (bytes[i]! & 0xf0) === 0x40) {
    rexB = (bytes[i]! & 1) !== 0;
    i++;
  }
  if (i >= bytes.length) return NON_CANONICAL_GP;
  let op = bytes[i++]!;
  let twoByte = false;
  let hasModrm: boolean;
  if (op === 0x0f) {
    if (i >= bytes.length) return NON_CANONICAL_GP;
    twoByte = true;
    op = bytes[i++]!;
    if (op === 0x38 || op === 0x3a) {
      i++; // three-byte opcode: ModRM follows the third byte
      hasModrm = true;
    } else hasModrm = !TWO_BYTE_NO_MODRM.has(op);
  } else hasModrm = ONE_BYTE_MODRM.has(op);
  const modrm = hasModrm && i < bytes.length ? bytes[i]! : null;
  const reg = modrm === null ? null : (modrm >> 3) & 7;
  const stack = implicitStack(op, twoByte, reg);
  if (stack) {
    // The stack access is the one that faulted if its own address is not canonical.
    const at = stack === 'push' ? regs.rsp - 8n : stack === 'pop' ? regs.rsp : regs.rbp;
    if (!isCanonical(at & 0xffff_ffff_ffff_ffffn) || !isCanonical((at + 7n) & 0xffff_ffff_ffff_ffffn)) return NON_CANONICAL_SS;
  }
  if (modrm === null || modrm >> 6 === 3) return NON_CANONICAL_GP;
  if (segment !== null) return segment === SS_PREFIX ? NON_CANONICAL_SS : NON_CANONICAL_GP;
  const mod = modrm >> 6;
  const rm = modrm & 7;
  let base: number;
  if (rm === 4) {
    if (i + 1 >= bytes.length) return NON_CANONICAL_GP;
    const sibBase = bytes[i + 1]! & 7;
    if (sibBase === 5 && mod === 0) return NON_CANONICAL_GP; // disp32, no base
    base = sibBase;
  } else {
    if (rm === 5 && mod === 0) return NON_CANONICAL_GP; // RIP-relative
    base = rm;
  }
  // RSP and RBP (not R12 and R13, which REX.B selects with the same bits) address through SS.
  return !rexB && (base === 4 || base === 5) ? NON_CANONICAL_SS : NON_CANONICAL_GP;
}
