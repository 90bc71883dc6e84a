/** Errors of the Linux loaders (bzImage boot protocol, PVH). */
import { ImageFormatError } from '../image-error.js';

/** A malformed or unsupported Linux image (file, offset, field: ImageFormatError). */
export class LinuxImageError extends ImageFormatError {
  override readonly name = 'LinuxImageError';
}

/** An initrd or module that does not fit, or bad loader options. */
export class LinuxLoadError extends Error {
  override readonly name = 'LinuxLoadError';
}
