/**
 * Parser for the Firmament boot-info block (version 1), the structure the
 * firmware hands to the next stage in RDI. Layout: docs/boot-info.md and
 * firmware/include/bootinfo.h (the C side is the producer).
 *
 * All integers are little-endian. Address fields are physical addresses;
 * the parser translates them through the `baseAddress` of the byte window
 * it is given, so it works on a dump of just the block or on a whole RAM
 * image.
 */

export const BOOT_INFO_MAGIC = 0x49424d46; // bytes 'F','M','B','I'
export const BOOT_INFO_VERSION = 1;
export const BOOT_INFO_HEADER_SIZE = 0x70;
export const BOOT_INFO_E820_ENTRY_SIZE = 24;
export const BOOT_INFO_ERROR_ENTRY_SIZE = 40;
/** Where the Firmament firmware places the block (layout.h BOOTINFO_ADDR). */
export const BOOT_INFO_DEFAULT_ADDRESS = 0x8000;

export const E820_USABLE = 1;
export const E820_RESERVED = 2;
export const E820_BAD = 5;

export type BootConsole = 'none' | 'com1' | 'debugcon';
export type PostErrorSeverity = 'error' | 'fatal';

export interface E820Entry {
  readonly base: number;
  readonly length: number;
  /** 1 usable, 2 reserved, 5 bad/unusable (other values are passed through). */
  readonly type: number;
  readonly attr: number;
}

export interface BootInfoPostError {
  readonly code: number;
  readonly severity: PostErrorSeverity;
  /** The bit (mask) this error sets in postFlags. */
  readonly flag: number;
  /** Per-code detail values (docs/post-codes.md); full 64-bit values. */
  readonly details: readonly [bigint, bigint, bigint, bigint];
}

export interface BootInfo {
  /** Physical address of the block. */
  readonly address: number;
  readonly version: number;
  readonly headerSize: number;
  readonly totalSize: number;
  readonly checksum: number;
  readonly ramSize: number;
  readonly ramTopBelow4G: number;
  readonly ramAbove4G: number;
  readonly cpuCount: number;
  readonly postFlags: number;
  readonly lastPostCode: number;
  readonly console: BootConsole;
  readonly e820Address: number;
  readonly e820: readonly E820Entry[];
  readonly errorsAddress: number;
  readonly errors: readonly BootInfoPostError[];
  readonly errorsDropped: number;
  readonly nextStage: { readonly entry: number; readonly start: number; readonly end: number };
}

/** Thrown for any malformed block; names the field and its offset in the block. */
export class BootInfoParseError extends Error {
  constructor(
    readonly field: string,
    /** Byte offset of the field from the start of the block. */
    readonly offset: number,
    detail: string,
  ) {
    super(`boot-info: field '${field}' at offset 0x${offset.toString(16)}: ${detail}`);
    this.name = 'BootInfoParseError';
  }
}

export interface ParseBootInfoOptions {
  /** Physical address of the block; defaults to baseAddress (bytes start with the block). */
  readonly blockAddress?: number | bigint;
  /** Verify the checksum field (default true). */
  readonly verifyChecksum?: boolean;
}

const hex = (v: number | bigint): string => `0x${v.toString(16)}`;

function toAddress(v: number | bigint, what: string): number {
  const n = typeof v === 'bigint' ? Number(v) : v;
  if (!Number.isSafeInteger(n) || n < 0 || (typeof v === 'bigint' && BigInt(n) !== v)) {
    throw new RangeError(`boot-info: ${what} ${String(v)} is not a non-negative safe integer`);
  }
  return n;
}

/** Field reader bound to one block; every read is bounds-checked and named. */
class BlockReader {
  private readonly view: DataView;

  constructor(
    private readonly bytes: Uint8Array,
    /** Index in `bytes` of the block's first byte. */
    private readonly start: number,
    /** Bytes readable from `start`. */
    private limit: number,
  ) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  /** Restrict further reads to the block's declared size. */
  setLimit(limit: number): void {
    this.limit = limit;
  }

  private check(field: string, offset: number, size: number): number {
    if (offset < 0 || offset + size > this.limit) {
      throw new BootInfoParseError(
        field,
        offset,
        `needs bytes 0x${offset.toString(16)}..0x${(offset + size - 1).toString(16)} but only ${this.limit} byte(s) of the block are available (truncated)`,
      );
    }
    return this.start + offset;
  }

  u8(field: string, offset: number): number {
    return this.view.getUint8(this.check(field, offset, 1));
  }

  u16(field: string, offset: number): number {
    return this.view.getUint16(this.check(field, offset, 2), true);
  }

  u32(field: string, offset: number): number {
    return this.view.getUint32(this.check(field, offset, 4), true);
  }

  u64big(field: string, offset: number): bigint {
    return this.view.getBigUint64(this.check(field, offset, 8), true);
  }

  /** A u64 that must fit a JS number (sizes, addresses). */
  u64(field: string, offset: number): number {
    const v = this.u64big(field, offset);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw new BootInfoParseError(field, offset, `value ${hex(v)} exceeds 2^53-1`);
    }
    return Number(v);
  }

  sum(length: number, skipFrom: number, skipTo: number): number {
    let s = 0;
    for (let i = 0; i < length; i++) {
      if (i >= skipFrom && i < skipTo) continue;
      s = (s + (this.bytes[this.start + i] ?? 0)) >>> 0;
    }
    return s;
  }
}

/**
 * Parse a boot-info block.
 * @param bytes memory window; bytes[0] is at physical `baseAddress`
 * @param baseAddress physical address of bytes[0]
 */
export function parseBootInfo(bytes: Uint8Array, baseAddress: number | bigint, options: ParseBootInfoOptions = {}): BootInfo {
  const base = toAddress(baseAddress, 'baseAddress');
  const address = toAddress(options.blockAddress ?? base, 'blockAddress');
  const start = address - base;
  if (start < 0 || start >= bytes.length) {
    throw new BootInfoParseError('magic', 0, `block address ${hex(address)} is outside the ${bytes.length}-byte window at ${hex(base)}`);
  }
  const r = new BlockReader(bytes, start, bytes.length - start);

  const magic = r.u32('magic', 0x00);
  if (magic !== BOOT_INFO_MAGIC) {
    throw new BootInfoParseError('magic', 0x00, `expected ${hex(BOOT_INFO_MAGIC)} ("FMBI"), got 0x${magic.toString(16).padStart(8, '0')}`);
  }
  const version = r.u16('version', 0x04);
  if (version !== BOOT_INFO_VERSION) {
    throw new BootInfoParseError('version', 0x04, `unsupported version ${version} (this parser reads version ${BOOT_INFO_VERSION})`);
  }
  const headerSize = r.u16('header_size', 0x06);
  if (headerSize < BOOT_INFO_HEADER_SIZE) {
    throw new BootInfoParseError('header_size', 0x06, `${headerSize} is smaller than the version 1 header (${BOOT_INFO_HEADER_SIZE})`);
  }
  const totalSize = r.u32('total_size', 0x08);
  if (totalSize < headerSize) {
    throw new BootInfoParseError('total_size', 0x08, `${totalSize} is smaller than header_size ${headerSize}`);
  }
  if (totalSize > bytes.length - start) {
    throw new BootInfoParseError('total_size', 0x08, `block declares ${totalSize} bytes but only ${bytes.length - start} are available (truncated)`);
  }
  r.setLimit(totalSize);
  // Every header field must lie inside the declared block.
  r.u64big('next_stage_end', 0x68);

  const checksum = r.u32('checksum', 0x0c);
  if (options.verifyChecksum !== false) {
    const computed = r.sum(totalSize, 0x0c, 0x10);
    if (computed !== checksum) {
      throw new BootInfoParseError('checksum', 0x0c, `stored ${hex(checksum)} but the ${totalSize} bytes sum to ${hex(computed)}`);
    }
  }

  const consoleCode = r.u8('console', 0x31);
  const consoles: readonly BootConsole[] = ['none', 'com1', 'debugcon'];
  const consoleKind = consoles[consoleCode];
  if (consoleKind === undefined) {
    throw new BootInfoParseError('console', 0x31, `unknown console kind ${consoleCode} (0 none, 1 COM1, 2 debugcon)`);
  }
  const cpuCount = r.u32('cpu_count', 0x28);
  if (cpuCount === 0) throw new BootInfoParseError('cpu_count', 0x28, 'must be at least 1');

  /** Offset within the block of a table given its physical address, checked to fit. */
  const table = (field: string, offset: number, addr: number, count: number, entrySize: number): number => {
    const rel = addr - address;
    if (count === 0) return rel;
    if (rel < headerSize || rel + count * entrySize > totalSize) {
      throw new BootInfoParseError(
        field,
        offset,
        `table at ${hex(addr)} with ${count} x ${entrySize} bytes is not inside the block ${hex(address)}..${hex(address + totalSize - 1)} after the header`,
      );
    }
    return rel;
  };

  const e820Count = r.u32('e820_count', 0x34);
  const e820Address = r.u64('e820_addr', 0x38);
  const e820EntrySize = r.u32('e820_entry_size', 0x40);
  if (e820EntrySize !== BOOT_INFO_E820_ENTRY_SIZE) {
    throw new BootInfoParseError('e820_entry_size', 0x40, `expected ${BOOT_INFO_E820_ENTRY_SIZE}, got ${e820EntrySize}`);
  }
  const e820Rel = table('e820_addr', 0x38, e820Address, e820Count, e820EntrySize);
  const e820: E820Entry[] = [];
  for (let i = 0; i < e820Count; i++) {
    const o = e820Rel + i * e820EntrySize;
    const entry: E820Entry = {
      base: r.u64(`e820[${i}].base`, o),
      length: r.u64(`e820[${i}].length`, o + 8),
      type: r.u32(`e820[${i}].type`, o + 16),
      attr: r.u32(`e820[${i}].attr`, o + 20),
    };
    if (entry.length === 0) throw new BootInfoParseError(`e820[${i}].length`, o + 8, 'zero-length entry');
    const prev = e820[i - 1];
    if (prev && entry.base < prev.base + prev.length) {
      throw new BootInfoParseError(`e820[${i}].base`, o, `${hex(entry.base)} overlaps or is below the previous entry ending at ${hex(prev.base + prev.length)}`);
    }
    e820.push(entry);
  }

  const errorCount = r.u32('error_count', 0x44);
  const errorsAddress = r.u64('errors_addr', 0x48);
  const errorEntrySize = r.u32('error_entry_size', 0x50);
  if (errorEntrySize !== BOOT_INFO_ERROR_ENTRY_SIZE) {
    throw new BootInfoParseError('error_entry_size', 0x50, `expected ${BOOT_INFO_ERROR_ENTRY_SIZE}, got ${errorEntrySize}`);
  }
  const errRel = table('errors_addr', 0x48, errorsAddress, errorCount, errorEntrySize);
  const errors: BootInfoPostError[] = [];
  for (let i = 0; i < errorCount; i++) {
    const o = errRel + i * errorEntrySize;
    const sev = r.u8(`errors[${i}].severity`, o + 1);
    if (sev !== 1 && sev !== 2) throw new BootInfoParseError(`errors[${i}].severity`, o + 1, `expected 1 (error) or 2 (fatal), got ${sev}`);
    errors.push({
      code: r.u8(`errors[${i}].code`, o),
      severity: sev === 1 ? 'error' : 'fatal',
      flag: r.u32(`errors[${i}].flag`, o + 4),
      details: [
        r.u64big(`errors[${i}].detail[0]`, o + 8),
        r.u64big(`errors[${i}].detail[1]`, o + 16),
        r.u64big(`errors[${i}].detail[2]`, o + 24),
        r.u64big(`errors[${i}].detail[3]`, o + 32),
      ],
    });
  }

  return {
    address,
    version,
    headerSize,
    totalSize,
    checksum,
    ramSize: r.u64('ram_size', 0x10),
    ramTopBelow4G: r.u64('ram_top_below_4g', 0x18),
    ramAbove4G: r.u64('ram_above_4g', 0x20),
    cpuCount,
    postFlags: r.u32('post_flags', 0x2c),
    lastPostCode: r.u8('last_post_code', 0x30),
    console: consoleKind,
    e820Address,
    e820,
    errorsAddress,
    errors,
    errorsDropped: r.u32('errors_dropped', 0x54),
    nextStage: {
      entry: r.u64('next_stage_entry', 0x58),
      start: r.u64('next_stage_start', 0x60),
      end: r.u64('next_stage_end', 0x68),
    },
  };
}

function sizeText(bytes: number): string {
  return bytes % 0x100000 === 0 ? `${bytes / 0x100000} MiB` : `${Math.floor(bytes / 1024)} KiB`;
}

/**
 * The summary line the Firmament test payload prints (without line ending),
 * e.g. "payload: boot-info v1, 64 MiB, 1 CPU, 6 e820 entries, POST flags 0x0, last POST 0x5F".
 */
export function formatBootInfoSummary(bi: BootInfo): string {
  const cpus = `${bi.cpuCount} CPU${bi.cpuCount === 1 ? '' : 's'}`;
  const last = bi.lastPostCode.toString(16).toUpperCase().padStart(2, '0');
  return `payload: boot-info v${bi.version}, ${sizeText(bi.ramSize)}, ${cpus}, ${bi.e820.length} e820 entries, POST flags 0x${bi.postFlags.toString(16)}, last POST 0x${last}`;
}
