/**
 * Disassembly around RIP with iced-x86, in the width of the current code
 * segment (16/32/64). Addresses are linear: CS.base + RIP outside long mode.
 * Lines before RIP come from re-synchronising a backward window, as
 * debuggers do; the first window start whose decode lands exactly on RIP wins.
 */
import { icedX86, type IcedX86 } from '../cpu/x86/iced.js';
import type { X86Cpu } from '../cpu/x86-cpu.js';
import type { CpuMode } from '../cpu/x86/registers.js';
import { cpuLocation } from './cpu-view.js';
import { readLinear } from './memory-view.js';
import { hex64, parseAddress } from './hex.js';

export interface DisassemblyRequest {
  /** Linear address of the first wanted instruction (default: the CPU's current linear RIP). */
  address?: bigint | number | string;
  /** Instructions from `address` on (default 16). */
  count?: number;
  /** Instructions shown before `address` (default 4). */
  before?: number;
  /** Override the decode width (default: the current mode's). */
  bits?: 16 | 32 | 64;
}

export interface DisassemblyLine {
  address: string;
  bytes: string;
  text: string;
  /** This is the instruction at the CPU's RIP. */
  current: boolean;
}

export interface DisassemblyView {
  cpu: number;
  mode: CpuMode;
  bits: 16 | 32 | 64;
  address: string;
  linearRip: string;
  lines: DisassemblyLine[];
}

const MAX_INSN = 15;
const BACK_WINDOW = 64;

let formatter: IcedX86.Formatter | undefined;

/** Intel syntax with 0x-prefixed lower-case hex and no leading zeros on branch targets: short lines for narrow panes. */
function newFormatter(): IcedX86.Formatter {
  const { Formatter, FormatterSyntax } = icedX86();
  const f = new Formatter(FormatterSyntax.Intel);
  f.hexPrefix = '0x';
  f.hexSuffix = '';
  f.uppercaseHex = false;
  f.branchLeadingZeros = false;
  f.spaceAfterOperandSeparator = true;
  return f;
}

interface Decoded {
  address: bigint;
  bytes: number[];
  text: string;
}

/** Decodes `bytes` starting at `address` until `limit` instructions or unreadable bytes (null). */
export function decodeBytes(bits: 16 | 32 | 64, address: bigint, bytes: readonly (number | null)[], limit: number): Decoded[] {
  const firstNull = bytes.indexOf(null);
  const usable = Uint8Array.from((firstNull < 0 ? bytes : bytes.slice(0, firstNull)) as number[]);
  const out: Decoded[] = [];
  if (usable.length === 0 || limit <= 0) return out;
  formatter ??= newFormatter();
  const { Decoder, DecoderOptions, Instruction } = icedX86();
  const decoder = new Decoder(bits, usable, DecoderOptions.None);
  const insn = new Instruction();
  try {
    decoder.ip = address;
    let offset = 0;
    while (out.length < limit && decoder.canDecode) {
      decoder.decodeOut(insn);
      const len = insn.length;
      // An instruction cut off by the end of readable bytes is not shown half-decoded.
      if (insn.isInvalid && offset + MAX_INSN > usable.length && firstNull >= 0) break;
      out.push({ address: address + BigInt(offset), bytes: Array.from(usable.subarray(offset, offset + len)), text: insn.isInvalid ? '(bad)' : formatter.format(insn) });
      offset += len;
    }
  } finally {
    insn.free();
    decoder.free();
  }
  return out;
}

/** Up to `count` instructions that end exactly at `target`, found from a backward window. */
function instructionsBefore(cpu: X86Cpu, bits: 16 | 32 | 64, target: bigint, count: number): Decoded[] {
  if (count <= 0 || target === 0n) return [];
  const window = target < BigInt(BACK_WINDOW) ? Number(target) : BACK_WINDOW;
  const start = target - BigInt(window);
  const { bytes } = readLinear(cpu, start, window);
  for (let k = 0; k < window; k++) {
    const decoded = decodeBytes(bits, start + BigInt(k), bytes.slice(k), window);
    const upTo: Decoded[] = [];
    for (const d of decoded) {
      if (d.address >= target) break;
      upTo.push(d);
    }
    const last = upTo[upTo.length - 1];
    if (last && last.address + BigInt(last.bytes.length) === target && !upTo.some((d) => d.text === '(bad)')) return upTo.slice(-count);
  }
  return [];
}

export function disassemble(cpu: X86Cpu, req: DisassemblyRequest = {}): DisassemblyView {
  const loc = cpuLocation(cpu);
  const bits = req.bits ?? loc.bits;
  const address = req.address === undefined ? loc.linearRip : parseAddress(req.address);
  const count = Math.max(1, Math.min(req.count ?? 16, 256));
  const before = instructionsBefore(cpu, bits, address, Math.max(0, Math.min(req.before ?? 4, 64)));
  const { bytes } = readLinear(cpu, address, count * MAX_INSN);
  const after = decodeBytes(bits, address, bytes, count);
  const lines = [...before, ...after].map((d) => ({
    address: hex64(d.address),
    bytes: d.bytes.map((b) => b.toString(16).padStart(2, '0')).join(''),
    text: d.text,
    current: d.address === loc.linearRip,
  }));
  return { cpu: cpu.index, mode: loc.mode, bits, address: hex64(address), linearRip: hex64(loc.linearRip), lines };
}
