/** The one shape of a guest-image loader error (Multiboot, bzImage, PVH): file, byte offset, field, problem. */

/**
 * A malformed or unsupported guest image. The message always names the file,
 * the byte offset in the file and the field:
 *   "guest.elf: offset 0x84: program header 2: p_filesz 0x9000 exceeds file size 0x2000"
 */
export class ImageFormatError extends Error {
  constructor(
    readonly fileName: string,
    /** Byte offset of the offending field in the file. */
    readonly offset: number,
    /** The field, e.g. "program header 2: p_filesz" or "multiboot header checksum". */
    readonly field: string,
    /** What is wrong with it. */
    readonly problem: string,
  ) {
    super(`${fileName}: offset 0x${offset.toString(16)}: ${field} ${problem}`);
  }
}
