/**
 * Parser for the handoff block the lightweight OS passes with VMCALL
 * (RAX = 'FIRM', RBX = address): memory map with fenced ranges, the POST
 * report of every firmware container, and the measured-boot event log.
 * Layout: firmware/os/include/handoff.h, docs/handoff-abi.md. Every problem is
 * a HandoffParseError naming the field and its offset.
 */
export const HANDOFF_MAGIC = 0x4f484d46; // 'F','M','H','O'
export const HANDOFF_VERSION = 1;
export const HANDOFF_VMCALL_RAX = 0x4d524946; // 'FIRM'
export const HANDOFF_E820_OS = 0x1000;

export type ContainerStatus = 'pass' | 'fail' | 'fixed' | 'rejected' | 'timeout';
const STATUS: Record<number, ContainerStatus> = { 1: 'pass', 2: 'fail', 3: 'fixed', 4: 'rejected', 5: 'timeout' };
const SEVERITY = ['info', 'warning', 'error', 'critical'] as const;
const EVENT_KIND = ['index', 'manifest', 'config', 'layer'] as const;

export class HandoffParseError extends Error {
  constructor(
    readonly field: string,
    readonly offset: number,
    detail: string,
  ) {
    super(`handoff: field '${field}' at offset 0x${offset.toString(16)}: ${detail}`);
    this.name = 'HandoffParseError';
  }
}

export interface HandoffMemoryRange {
  base: number;
  length: number;
  type: number;
  typeName: string;
}

export interface HandoffFinding {
  severity: (typeof SEVERITY)[number];
  source: 'container' | 'os';
  code: number;
  details: [string, string, string, string];
  text: string;
}

export interface HandoffContainer {
  name: string;
  digest: string;
  status: ContainerStatus;
  exitCode: number;
  findings: HandoffFinding[];
  fixesApplied: number;
  memoryLimit: number;
  timeLimitMs: number;
}

export interface HandoffEvent {
  index: number;
  kind: (typeof EVENT_KIND)[number];
  container: string | null;
  size: number;
  digest: string;
  description: string;
}

export interface Handoff {
  address: number;
  totalSize: number;
  bootInfoAddress: number;
  result: 'pass' | 'fail';
  memoryMap: HandoffMemoryRange[];
  containers: HandoffContainer[];
  events: HandoffEvent[];
  pcr: string;
  counts: Record<ContainerStatus, number>;
  postFlags: number;
  postFlagsResolved: number;
  findingsDropped: number;
  os: { start: number; end: number; cr3: number };
}

const TYPE_NAMES: Record<number, string> = { 1: 'usable', 2: 'reserved', 5: 'bad', [HANDOFF_E820_OS]: 'os' };
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

/** `read(addr, len)` reads physical memory (the machine's RAM). */
export function parseHandoff(read: (addr: number, len: number) => Uint8Array, address: number): Handoff {
  const head = read(address, 0x100);
  const h = new DataView(head.buffer, head.byteOffset, head.byteLength);
  const magic = h.getUint32(0x00, true);
  if (magic !== HANDOFF_MAGIC) throw new HandoffParseError('magic', 0x00, `expected 0x${HANDOFF_MAGIC.toString(16)} ("FMHO"), got 0x${magic.toString(16)}`);
  const version = h.getUint16(0x04, true);
  if (version !== HANDOFF_VERSION) throw new HandoffParseError('version', 0x04, `unsupported version ${version}`);
  const headerSize = h.getUint16(0x06, true);
  if (headerSize < 0x100) throw new HandoffParseError('header_size', 0x06, `${headerSize} is smaller than 0x100`);
  const totalSize = h.getUint32(0x08, true);
  if (totalSize < headerSize || totalSize > 16 * 1024 * 1024) throw new HandoffParseError('total_size', 0x08, `${totalSize} is not a plausible block size`);
  const block = read(address, totalSize);
  const dv = new DataView(block.buffer, block.byteOffset, block.byteLength);
  const stored = dv.getUint32(0x0c, true);
  let sum = 0;
  for (let i = 0; i < totalSize; i++) if (i < 0x0c || i >= 0x10) sum = (sum + block[i]!) >>> 0;
  if (sum !== stored) throw new HandoffParseError('checksum', 0x0c, `stored 0x${stored.toString(16)} but the ${totalSize} bytes sum to 0x${sum.toString(16)}`);

  const table = (name: string, off: number, entrySize: number): { at: number; count: number } => {
    const addr = Number(dv.getBigUint64(off, true));
    const count = dv.getUint32(off + 8, true);
    const size = dv.getUint32(off + 12, true);
    if (size !== entrySize) throw new HandoffParseError(`${name}_entry_size`, off + 12, `expected ${entrySize}, got ${size}`);
    const at = addr - address;
    if (count > 0 && (at < headerSize || at + count * size > totalSize)) throw new HandoffParseError(`${name}_addr`, off, `table [0x${addr.toString(16)}, +${count * size}) lies outside the block`);
    return { at, count };
  };
  const cstr = (at: number, max: number): string => {
    const b = block.subarray(at, at + max);
    const end = b.indexOf(0);
    return Buffer.from(end < 0 ? b : b.subarray(0, end)).toString('latin1');
  };

  const mm = table('memmap', 0x20, 24);
  const memoryMap: HandoffMemoryRange[] = [];
  for (let i = 0; i < mm.count; i++) {
    const o = mm.at + i * 24;
    const type = dv.getUint32(o + 16, true);
    memoryMap.push({ base: Number(dv.getBigUint64(o, true)), length: Number(dv.getBigUint64(o + 8, true)), type, typeName: TYPE_NAMES[type] ?? `type ${type}` });
  }

  const ft = table('findings', 0x40, 256);
  const findings: (HandoffFinding & { container: number })[] = [];
  for (let i = 0; i < ft.count; i++) {
    const o = ft.at + i * 256;
    const sev = block[o + 4]!;
    findings.push({
      container: dv.getUint32(o, true),
      severity: SEVERITY[sev] ?? 'critical',
      source: block[o + 5] === 1 ? 'os' : 'container',
      code: dv.getUint32(o + 8, true),
      details: [0, 1, 2, 3].map((k) => `0x${dv.getBigUint64(o + 0x10 + k * 8, true).toString(16)}`) as [string, string, string, string],
      text: cstr(o + 0x30, 208),
    });
  }

  const ct = table('containers', 0x30, 128);
  const containers: HandoffContainer[] = [];
  for (let i = 0; i < ct.count; i++) {
    const o = ct.at + i * 128;
    const statusCode = dv.getUint32(o + 0x40, true);
    const status = STATUS[statusCode];
    if (!status) throw new HandoffParseError(`containers[${i}].status`, o + 0x40, `unknown status ${statusCode}`);
    const first = dv.getUint32(o + 0x48, true);
    const n = dv.getUint32(o + 0x4c, true);
    containers.push({
      name: cstr(o, 32),
      digest: `sha256:${hex(block.subarray(o + 0x20, o + 0x40))}`,
      status,
      exitCode: dv.getInt32(o + 0x44, true),
      findings: findings.slice(first, first + n).map(({ container: _c, ...f }) => f),
      fixesApplied: dv.getUint32(o + 0x50, true),
      memoryLimit: Number(dv.getBigUint64(o + 0x58, true)),
      timeLimitMs: dv.getUint32(o + 0x60, true),
    });
  }

  const et = table('events', 0x50, 96);
  const events: HandoffEvent[] = [];
  for (let i = 0; i < et.count; i++) {
    const o = et.at + i * 96;
    const ci = dv.getUint32(o + 8, true);
    events.push({
      index: dv.getUint32(o, true),
      kind: EVENT_KIND[dv.getUint32(o + 4, true)] ?? 'layer',
      container: ci === 0xffffffff ? null : (containers[ci]?.name ?? `#${ci}`),
      size: dv.getUint32(o + 0x0c, true),
      digest: `sha256:${hex(block.subarray(o + 0x10, o + 0x30))}`,
      description: cstr(o + 0x30, 48),
    });
  }

  return {
    address,
    totalSize,
    bootInfoAddress: Number(dv.getBigUint64(0x10, true)),
    result: dv.getUint32(0x18, true) === 0 ? 'pass' : 'fail',
    memoryMap,
    containers,
    events,
    pcr: `sha256:${hex(block.subarray(0x60, 0x80))}`,
    counts: { pass: dv.getUint32(0x80, true), fail: dv.getUint32(0x84, true), fixed: dv.getUint32(0x88, true), rejected: dv.getUint32(0x8c, true), timeout: dv.getUint32(0x90, true) },
    postFlags: dv.getUint32(0x94, true),
    postFlagsResolved: dv.getUint32(0x98, true),
    findingsDropped: dv.getUint32(0x9c, true),
    os: { start: Number(dv.getBigUint64(0xa0, true)), end: Number(dv.getBigUint64(0xa8, true)), cr3: Number(dv.getBigUint64(0xb0, true)) },
  };
}
