/** Hex formatting shared by every inspection view: fixed widths so columns line up in the TUI and diffs stay readable in JSON. */

export const hex = (v: bigint | number, digits = 0): string => `0x${BigInt(v).toString(16).padStart(digits, '0')}`;
export const hex64 = (v: bigint | number): string => hex(v, 16);
export const hex32 = (v: bigint | number): string => hex(BigInt(v) & 0xffff_ffffn, 8);
export const hex16 = (v: bigint | number): string => hex(BigInt(v) & 0xffffn, 4);
export const hex8 = (v: number): string => hex(v & 0xff, 2);

/**
 * Parses an address or number as users type it: 0x1f, 1f h-suffix-free hex with 0x, decimal,
 * `_` separators, and K/M/G suffixes. Throws with the text it could not read.
 */
export function parseAddress(text: string | number | bigint): bigint {
  if (typeof text === 'bigint') return text;
  if (typeof text === 'number') {
    if (!Number.isInteger(text) || text < 0) throw new RangeError(`address ${text} is not a non-negative integer`);
    return BigInt(text);
  }
  const t = text.trim().toLowerCase().replace(/_/g, '');
  const m = /^(0x[0-9a-f]+|[0-9]+)([kmg])?$/.exec(t);
  if (!m) throw new RangeError(`'${text}' is not an address (use 0x1000, 4096 or 4K)`);
  const mul = m[2] === 'k' ? 1024n : m[2] === 'm' ? 1024n ** 2n : m[2] === 'g' ? 1024n ** 3n : 1n;
  return BigInt(m[1]!) * mul;
}

/** Nanoseconds of virtual time as milliseconds with microsecond precision (as BootReport does). */
export const nsToMs = (ns: number): number => Math.round(ns / 1000) / 1000;
