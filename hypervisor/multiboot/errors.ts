/** Errors raised by the Multiboot loader. */
import { ImageFormatError } from '../image-error.js';

const hex = (n: number | bigint): string => `0x${n.toString(16)}`;

/** A malformed or unsupported Multiboot image (file, offset, field: ImageFormatError). */
export class MultibootError extends ImageFormatError {
  override readonly name = 'MultibootError';
}

/** Bad arguments to buildMultibootInfo(). */
export class MultibootInfoError extends Error {
  override readonly name = 'MultibootInfoError';
}

export { hex };
