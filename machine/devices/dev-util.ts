/**
 * Small helpers shared by the device models: byte-wise port access,
 * byte order, fixed-point time conversion and range-checked state readers.
 */
import type { AccessSize } from './device.js';
import { StateError, stateNumber, type StateRecord, type StateValue } from '../state.js';

/** All ones for an access of `size` bytes (open-bus value). Size 8 is not representable exactly and is refused. */
export function allOnes(size: AccessSize): number {
  switch (size) {
    case 1:
      return 0xff;
    case 2:
      return 0xffff;
    case 4:
      return 0xffffffff;
    default:
      throw new RangeError('allOnes: 8-byte values do not fit a number');
  }
}

/**
 * Performs a wide port read as consecutive byte reads, the way ISA splits
 * accesses to byte-wide register files (e.g. `inw 0x70` reads 0x70 then 0x71).
 */
export function readBytewise(port: number, size: AccessSize, readByte: (port: number) => number): number {
  if (size === 8) throw new RangeError('8-byte port access');
  let v = 0;
  for (let i = 0; i < size; i++) v |= (readByte((port + i) & 0xffff) & 0xff) << (8 * i);
  return v >>> 0;
}

export function writeBytewise(port: number, size: AccessSize, value: number, writeByte: (port: number, byte: number) => void): void {
  if (size === 8) throw new RangeError('8-byte port access');
  for (let i = 0; i < size; i++) writeByte((port + i) & 0xffff, (value >>> (8 * i)) & 0xff);
}

export function bswap32(v: number): number {
  return (((v & 0xff) << 24) | ((v & 0xff00) << 8) | ((v >>> 8) & 0xff00) | ((v >>> 24) & 0xff)) >>> 0;
}

export function toBcd(v: number): number {
  return ((Math.floor(v / 10) % 10) << 4) | (v % 10);
}

export function fromBcd(v: number): number {
  return (v >> 4) * 10 + (v & 0x0f);
}

/** floor(a * b / c) exactly, for non-negative integers whose product may exceed 2^53. */
export function mulDivFloor(a: number, b: number, c: number): number {
  const p = a * b;
  if (Number.isSafeInteger(p)) return Math.floor(p / c);
  return Number((BigInt(a) * BigInt(b)) / BigInt(c));
}

/** ceil(a * b / c) exactly, for non-negative integers. */
export function mulDivCeil(a: number, b: number, c: number): number {
  const p = a * b;
  if (Number.isSafeInteger(p)) return Math.ceil(p / c);
  const bc = BigInt(c);
  return Number((BigInt(a) * BigInt(b) + bc - 1n) / bc);
}

/** stateNumber plus an integer range check; the error names the field. */
export function stateInt(rec: StateRecord, field: string, component: string, min: number, max: number): number {
  const v = stateNumber(rec, field, component);
  if (!Number.isInteger(v) || v < min || v > max) throw new StateError(component, field, `expected integer in [${min}, ${max}], got ${v}`);
  return v;
}

/** A number or null (e.g. a timer deadline that may be absent). */
export function stateIntOrNull(rec: StateRecord, field: string, component: string, min: number, max: number): number | null {
  if (rec[field] === null) return null;
  return stateInt(rec, field, component, min, max);
}

/** A list of records (e.g. per-channel state), with an exact length. */
export function stateRecordList(rec: StateRecord, field: string, component: string, length: number): StateRecord[] {
  const v: StateValue | undefined = rec[field];
  if (!Array.isArray(v)) throw new StateError(component, field, 'expected array of records');
  if (v.length !== length) throw new StateError(component, field, `expected ${length} entries, got ${v.length}`);
  return v.map((e, i) => {
    if (e === null || typeof e !== 'object' || Array.isArray(e) || e instanceof Uint8Array) {
      throw new StateError(component, `${field}[${i}]`, 'expected record');
    }
    return e;
  });
}

/** 32-bit FNV-1a, used for deterministic identifiers and content digests. */
export function fnv1a(bytes: Uint8Array, seed = 0x811c9dc5): number {
  let h = seed >>> 0;
  for (let i = 0; i < bytes.length; i++) {
    h ^= bytes[i]!;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}
