/** Errors of the Linux loaders (bzImage boot protocol, PVH): file, offset and field, like MultibootError. */
const hex = (n: number): string => `0x${n.toString(16)}`;

export class LinuxImageError extends Error {
  override readonly name = 'LinuxImageError';
  constructor(
    readonly fileName: string,
    readonly offset: number,
    readonly field: string,
    readonly problem: string,
  ) {
    super(`${fileName}: offset ${hex(offset)}: ${field} ${problem}`);
  }
}

/** An initrd or module that does not fit, or bad loader options. */
export class LinuxLoadError extends Error {
  override readonly name = 'LinuxLoadError';
}
