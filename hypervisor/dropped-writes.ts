/**
 * Guest writes to guest-physical addresses with nothing behind them are
 * dropped, as on a PC bus (and as QEMU does). The write faults (the open-bus
 * mapping is read-only); this finishes the instruction without it.
 *
 * String stores (STOS, MOVS, with or without REP) are completed arithmetically
 * for every iteration that falls in the faulting 4 KiB page: RDI (and RSI)
 * advance, RCX counts down, and the loop goes on natively after the page, so
 * a `rep stos` across a hole ends with RCX = 0 as in QEMU. Any other
 * instruction is skipped whole (its write is its only effect for MOV stores;
 * see docs/hypervisor.md for what that leaves out).
 */
import { icedX86 } from '../machine/cpu/x86/iced.js';
import type { X86Cpu } from '../machine/cpu/x86-cpu.js';
import { REG } from '../machine/cpu/unicorn/constants.js';
import { RFLAGS } from '../machine/cpu/x86/registers.js';

let element: Partial<Record<number, { bytes: number; movs: boolean }>> | undefined;
const stringElement = (mnemonic: number): { bytes: number; movs: boolean } | undefined => {
  const { Mnemonic } = icedX86();
  element ??= {
  [Mnemonic.Stosb]: { bytes: 1, movs: false },
  [Mnemonic.Stosw]: { bytes: 2, movs: false },
  [Mnemonic.Stosd]: { bytes: 4, movs: false },
  [Mnemonic.Stosq]: { bytes: 8, movs: false },
  [Mnemonic.Movsb]: { bytes: 1, movs: true },
  [Mnemonic.Movsw]: { bytes: 2, movs: true },
  [Mnemonic.Movsd]: { bytes: 4, movs: true },
  [Mnemonic.Movsq]: { bytes: 8, movs: true },
  };
  return element[mnemonic];
};

export type DroppedWrite = { kind: 'string'; iterations: number; done: boolean } | { kind: 'skipped'; length: number } | { kind: 'undecodable' };

/** Finishes the instruction at RIP whose store into an unbacked page was dropped. */
export function dropWrite(cpu: X86Cpu): DroppedWrite {
  const rip = cpu.readRip();
  const bytes = cpu.fetchBytes(rip, 15);
  if (bytes.length === 0) return { kind: 'undecodable' };
  const mode = cpu.mode();
  const { Decoder, DecoderOptions, OpKind } = icedX86();
  const decoder = new Decoder(mode === 'long' ? 64 : mode === 'real' ? 16 : 32, bytes, DecoderOptions.None);
  try {
    const instr = decoder.decode();
    try {
      const len = instr.length;
      if (len === 0 || instr.isInvalid) return { kind: 'undecodable' };
      const el = stringElement(instr.mnemonic);
      const addrBits = instr.op0Kind === OpKind.MemoryESRDI ? 64 : instr.op0Kind === OpKind.MemoryESEDI ? 32 : instr.op0Kind === OpKind.MemoryESDI ? 16 : 0;
      if (el && addrBits) return stringStore(cpu, rip, BigInt(len), el, addrBits, instr.hasRepPrefix || instr.hasRepePrefix || instr.hasRepnePrefix);
      cpu.completeInstruction(rip + BigInt(len));
      return { kind: 'skipped', length: len };
    } finally {
      instr.free();
    }
  } finally {
    decoder.free();
  }
}

function stringStore(cpu: X86Cpu, rip: bigint, len: bigint, el: { bytes: number; movs: boolean }, addrBits: 16 | 32 | 64, rep: boolean): DroppedWrite {
  const mask = (1n << BigInt(addrBits)) - 1n;
  const e = cpu.engine;
  const count = rep ? e.readReg(REG.RCX) & mask : 1n;
  if (count === 0n) {
    cpu.completeInstruction(rip + len);
    return { kind: 'string', iterations: 0, done: true };
  }
  const down = (cpu.readRflags() & RFLAGS.DF) !== 0;
  const di = e.readReg(REG.RDI) & mask;
  // Iterations whose element starts in this 4 KiB page (at least the faulting one).
  const offset = Number(di & 0xfffn);
  const inPage = BigInt(Math.max(1, down ? Math.floor(offset / el.bytes) + 1 : Math.floor((4096 - offset) / el.bytes)));
  const n = count < inPage ? count : inPage;
  const step = n * BigInt(el.bytes) * (down ? -1n : 1n);
  const put = (reg: number, v: bigint): void => {
    // 16-bit addressing keeps the register's upper bits; 32-bit writes zero-extend, as the CPU does.
    const old = e.readReg(reg);
    e.writeReg(reg, addrBits === 16 ? (old & ~0xffffn) | (v & 0xffffn) : v & mask);
  };
  put(REG.RDI, di + step);
  if (el.movs) put(REG.RSI, (e.readReg(REG.RSI) & mask) + step);
  if (rep) put(REG.RCX, count - n);
  const done = !rep || count === n;
  // Unfinished REP: RIP stays on the instruction and the remaining iterations run natively.
  if (done) cpu.completeInstruction(rip + len);
  return { kind: 'string', iterations: Number(n), done };
}
