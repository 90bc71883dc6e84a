/**
 * Guest writes to guest-physical addresses with nothing behind them are
 * dropped, as on a PC bus (and as QEMU does). The write faults (the open-bus
 * mapping is read-only); this finishes the instruction without it.
 *
 * String stores (STOS, MOVS, with or without REP) are completed arithmetically
 * for every iteration that falls in the faulting 4 KiB page: RDI (and RSI)
 * advance, RCX counts down, and the loop goes on natively after the page, so
 * a `rep stos` across a hole ends with RCX = 0 as in QEMU. Stack stores
 * (PUSH, PUSHF, CALL, ENTER's frame push) keep their RSP update, and CALL
 * goes to its target, as QEMU does. Any other instruction is skipped whole
 * (its write is its only effect for MOV stores; see docs/hypervisor.md for
 * what that leaves out).
 */
import type { Instruction, Register } from 'iced-x86';
import { icedX86 } from '../machine/cpu/x86/iced.js';
import type { X86Cpu } from '../machine/cpu/x86-cpu.js';
import { REG } from '../machine/cpu/unicorn/constants.js';
import { RFLAGS } from '../machine/cpu/x86/registers.js';
import { SEG } from '../machine/cpu/x86/context-layout.js';

// iced-x86 loads on first use (machine/cpu/x86/iced.ts): most runs never drop a write.
let tables: { element: Partial<Record<number, { bytes: number; movs: boolean }>>; segment: Partial<Record<number, number>> } | undefined;
const lookup = (): NonNullable<typeof tables> => {
  const { Mnemonic, Register } = icedX86();
  tables ??= {
    element: {
      [Mnemonic.Stosb]: { bytes: 1, movs: false },
      [Mnemonic.Stosw]: { bytes: 2, movs: false },
      [Mnemonic.Stosd]: { bytes: 4, movs: false },
      [Mnemonic.Stosq]: { bytes: 8, movs: false },
      [Mnemonic.Movsb]: { bytes: 1, movs: true },
      [Mnemonic.Movsw]: { bytes: 2, movs: true },
      [Mnemonic.Movsd]: { bytes: 4, movs: true },
      [Mnemonic.Movsq]: { bytes: 8, movs: true },
    },
    segment: { [Register.ES]: SEG.ES, [Register.CS]: SEG.CS, [Register.SS]: SEG.SS, [Register.DS]: SEG.DS, [Register.FS]: SEG.FS, [Register.GS]: SEG.GS },
  };
  return tables;
};

export type DroppedWrite =
  | { kind: 'string'; iterations: number; done: boolean }
  | { kind: 'stack'; rspDelta: number; branch: bigint | null }
  | { kind: 'skipped'; length: number }
  | { kind: 'undecodable' };

/** Finishes the instruction at RIP whose store into an unbacked page was dropped. */
export function dropWrite(cpu: X86Cpu): DroppedWrite {
  const rip = cpu.readRip();
  const bytes = cpu.fetchBytes(rip, 15);
  if (bytes.length === 0) return { kind: 'undecodable' };
  const mode = cpu.mode();
  const { Decoder, DecoderOptions, OpKind } = icedX86();
  const bitness = mode === 'long' ? 64 : mode === 'real' ? 16 : 32;
  const decoder = new Decoder(bitness, bytes, DecoderOptions.None);
  decoder.ip = rip;
  try {
    const instr = decoder.decode();
    try {
      const len = instr.length;
      if (len === 0 || instr.isInvalid) return { kind: 'undecodable' };
      const el = lookup().element[instr.mnemonic];
      const addrBits = instr.op0Kind === OpKind.MemoryESRDI ? 64 : instr.op0Kind === OpKind.MemoryESEDI ? 32 : instr.op0Kind === OpKind.MemoryESDI ? 16 : 0;
      if (el && addrBits) return stringStore(cpu, rip, BigInt(len), el, addrBits, instr.hasRepPrefix || instr.hasRepePrefix || instr.hasRepnePrefix);
      if (instr.stackPointerIncrement < 0) {
        const stack = stackStore(cpu, instr, rip + BigInt(len), bitness);
        if (stack) return stack;
      }
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

/** Reads a general register as the instruction names it (EAX: the low 32 bits of RAX). */
function gpr(cpu: X86Cpu, reg: Register): bigint | null {
  const { Register, RegisterExt } = icedX86();
  if (reg === Register.None) return 0n;
  const full = Register[RegisterExt.fullRegister(reg)] as keyof typeof REG | undefined;
  const id = full !== undefined ? REG[full] : undefined;
  if (id === undefined || !RegisterExt.isGPR(reg)) return null;
  const v = cpu.engine.readReg(id);
  const bits = BigInt(RegisterExt.size(reg) * 8);
  return v & ((1n << bits) - 1n);
}

/**
 * A PUSH, PUSHF, CALL or ENTER whose stack store fell into a hole: the store is
 * dropped, RSP still moves (in the stack's width), and a CALL still branches.
 * Null for forms this does not complete (a far CALL; an indirect CALL through
 * memory that cannot be read): those are skipped whole.
 */
function stackStore(cpu: X86Cpu, instr: Instruction, next: bigint, bitness: 16 | 32 | 64): DroppedWrite | null {
  const { FlowControl, Mnemonic, OpKind } = icedX86();
  let target: bigint | null = null;
  if (instr.flowControl === FlowControl.Call || instr.flowControl === FlowControl.IndirectCall) {
    const op = instr.op0Kind;
    if (op === OpKind.NearBranch16 || op === OpKind.NearBranch32 || op === OpKind.NearBranch64) target = instr.nearBranchTarget;
    else if (op === OpKind.Register) target = gpr(cpu, instr.op0Register);
    else if (op === OpKind.Memory) target = indirectTarget(cpu, instr, next);
    if (target === null) return null;
  }
  const width = bitness === 16 ? 16n : bitness === 32 ? 32n : 64n;
  const mask = (1n << width) - 1n;
  const e = cpu.engine;
  const rsp = e.readReg(REG.RSP);
  const moved = (rsp + BigInt(instr.stackPointerIncrement)) & mask;
  e.writeReg(REG.RSP, width === 64n ? moved : (rsp & ~mask) | moved);
  // ENTER also sets RBP to the new frame, which the CPU does before its (dropped) stores.
  if (instr.mnemonic === Mnemonic.Enter) e.writeReg(REG.RBP, width === 64n ? moved : (e.readReg(REG.RBP) & ~mask) | moved);
  cpu.completeInstruction(target ?? next);
  return { kind: 'stack', rspDelta: instr.stackPointerIncrement, branch: target };
}

/** The target of `call [mem]`: the pointer read through the guest's own mappings. */
function indirectTarget(cpu: X86Cpu, instr: Instruction, next: bigint): bigint | null {
  const { Register } = icedX86();
  const size = instr.memorySize === 0 ? 0 : instr.stackPointerIncrement < 0 ? -instr.stackPointerIncrement : 0;
  if (size === 0) return null;
  let addr: bigint;
  if (instr.isIpRelMemoryOperand) {
    addr = instr.ipRelMemoryAddress;
  } else {
    const base = instr.memoryBase === Register.RIP || instr.memoryBase === Register.EIP ? next : gpr(cpu, instr.memoryBase);
    const index = gpr(cpu, instr.memoryIndex);
    if (base === null || index === null) return null;
    addr = base + index * BigInt(instr.memoryIndexScale) + instr.memoryDisplacementU64;
  }
  // Long mode: only FS and GS have bases. Otherwise the segment's base applies.
  const seg = lookup().segment[instr.memorySegment];
  if (seg !== undefined && (cpu.mode() !== 'long' || seg === SEG.FS || seg === SEG.GS)) addr += cpu.segBase(seg);
  if (cpu.mode() !== 'long') addr &= 0xffff_ffffn;
  const bytes = cpu.readLinearBytes(BigInt.asUintN(64, addr), size);
  if (bytes === null) return null;
  let v = 0n;
  for (let i = size - 1; i >= 0; i--) v = (v << 8n) | BigInt(bytes[i]!);
  return v;
}
