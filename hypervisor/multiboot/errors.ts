/** Errors raised by the Multiboot loader. */

const hex = (n: number | bigint): string => `0x${n.toString(16)}`;

/**
 * A malformed or unsupported Multiboot image. The message always names the
 * file, the byte offset in the file and the field:
 *   "guest.elf: offset 0x84: program header 2: p_filesz 0x9000 exceeds file size 0x2000"
 */
export class MultibootError extends Error {
  override readonly name = 'MultibootError';
  constructor(
    readonly fileName: string,
    /** Byte offset of the offending field in the file. */
    readonly offset: number,
    /** The field, e.g. "program header 2: p_filesz" or "multiboot header checksum". */
    readonly field: string,
    /** What is wrong with it. */
    readonly problem: string,
  ) {
    super(`${fileName}: offset ${hex(offset)}: ${field} ${problem}`);
  }
}

/** Bad arguments to buildMultibootInfo(). */
export class MultibootInfoError extends Error {
  override readonly name = 'MultibootInfoError';
}

export { hex };
