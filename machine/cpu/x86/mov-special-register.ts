/**
 * The shared shape of MOV to/from a control or debug register (0F 20-23 /r):
 * legacy prefixes, an optional REX last (in 64-bit mode), the opcode and a
 * ModRM whose reg field names the special register and whose r/m field the
 * general register (the mod bits are ignored: always a register operand).
 */
const LEGACY_PREFIXES = [0x66, 0x67, 0xf2, 0xf3, 0xf0, 0x2e, 0x36, 0x3e, 0x26, 0x64, 0x65];

export interface MovSpecialRegister {
  write: boolean;
  /** ModRM.reg with REX.R (0-15). */
  reg: number;
  /** General register number 0-15 (RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI, R8-R15). */
  gpr: number;
  /** A LOCK prefix was present. */
  lock: boolean;
  length: number;
}

/** `read`/`write`: the second opcode byte of the read (0x20, 0x21) and write (0x22, 0x23) forms. */
export function decodeMovSpecialRegister(bytes: Uint8Array, long: boolean, read: number, write: number): MovSpecialRegister | null {
  let i = 0;
  let lock = false;
  while (i < bytes.length && LEGACY_PREFIXES.includes(bytes[i]!)) lock ||= bytes[i++] === 0xf0;
  let rexB = 0;
  let rexR = 0;
  if (long && i < bytes.length && (bytes[i]! & 0xf0) === 0x40) {
    rexB = bytes[i]! & 1;
    rexR = (bytes[i]! >> 2) & 1;
    i++;
  }
  if (bytes[i] !== 0x0f || (bytes[i + 1] !== read && bytes[i + 1] !== write) || bytes[i + 2] === undefined) return null;
  const modrm = bytes[i + 2]!;
  return { write: bytes[i + 1] === write, reg: ((modrm >> 3) & 7) | (rexR << 3), gpr: (modrm & 7) | (rexB << 3), lock, length: i + 3 };
}
