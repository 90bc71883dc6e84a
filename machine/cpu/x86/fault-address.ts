/**
 * The exact faulting linear address for CR2. Unicorn's TLB-fill hook only
 * gives the page, so we decode the faulting instruction (iced-x86) and find
 * the memory operand that touches that page, as the CPU would report it.
 */
import { icedX86, type IcedX86 } from './iced.js';
import { REG, UC_MEM_FETCH } from '../unicorn/constants.js';
import type { UnicornEngine } from '../unicorn/engine.js';
import { SEG } from './context-layout.js';

export interface FaultingCpu {
  readonly engine: UnicornEngine;
  mode(): 'real' | 'protected' | 'long' | 'compatibility';
  segBase(seg: number): bigint;
  fetchBytes(rip: bigint, n: number): Uint8Array;
}

const GPR64: Record<string, number> = {
  RAX: REG.RAX, RBX: REG.RBX, RCX: REG.RCX, RDX: REG.RDX, RSI: REG.RSI, RDI: REG.RDI, RBP: REG.RBP, RSP: REG.RSP,
  R8: REG.R8, R9: REG.R9, R10: REG.R10, R11: REG.R11, R12: REG.R12, R13: REG.R13, R14: REG.R14, R15: REG.R15, RIP: REG.RIP,
};

const SEG_INDEX: Record<string, number> = { ES: SEG.ES, CS: SEG.CS, SS: SEG.SS, DS: SEG.DS, FS: SEG.FS, GS: SEG.GS };

/** Value of an iced register (any width) as an unsigned BigInt. */
function regValue(cpu: FaultingCpu, reg: IcedX86.Register, nextRip: bigint): bigint {
  const { Register } = icedX86();
  const name = Register[reg] ?? '';
  const size = Register[reg] === undefined ? 8 : (RegisterExtSize(reg) ?? 8);
  let full = name;
  if (/^E(AX|BX|CX|DX|SI|DI|BP|SP|IP)$/.test(name)) full = 'R' + name.slice(1);
  else if (/^(AX|BX|CX|DX|SI|DI|BP|SP|IP)$/.test(name)) full = 'R' + name;
  else if (/^R\d+[DW]$/.test(name)) full = name.slice(0, -1);
  if (full === 'RIP') return nextRip & ((1n << BigInt(size * 8)) - 1n);
  const id = GPR64[full];
  if (id === undefined) return 0n;
  return cpu.engine.readReg(id) & ((1n << BigInt(size * 8)) - 1n);
}

function RegisterExtSize(reg: IcedX86.Register): number | undefined {
  const { Register } = icedX86();
  const n = Register[reg] ?? '';
  if (n.startsWith('R') && !/^R\d+[DWB]$/.test(n)) return 8;
  if (n.startsWith('E') || /^R\d+D$/.test(n)) return 4;
  if (/^(AX|BX|CX|DX|SI|DI|BP|SP|IP)$/.test(n) || /^R\d+W$/.test(n)) return 2;
  return undefined;
}

let factory: IcedX86.InstructionInfoFactory | undefined;

export function faultAddress(cpu: FaultingCpu, rip: bigint, page: bigint, access: number): bigint {
  const mode = cpu.mode();
  const long = mode === 'long';
  const csBase = long ? 0n : cpu.segBase(SEG.CS);
  const linearRip = rip + csBase;
  if (access === UC_MEM_FETCH) {
    // Instruction fetch: the instruction starts on that page, or crosses into it.
    return (linearRip & ~0xfffn) === page ? linearRip : page;
  }
  const bytes = cpu.fetchBytes(rip, 15);
  if (bytes.length === 0) return page;
  // 16-bit protected-mode code is treated as 32-bit here; nothing we run uses it.
  const bits = long ? 64 : mode === 'real' ? 16 : 32;
  const { Decoder, DecoderOptions, Instruction, InstructionInfoFactory, MemorySizeExt, Register } = icedX86();
  const decoder = new Decoder(bits, bytes, DecoderOptions.None);
  decoder.ip = rip;
  const instr = new Instruction();
  try {
    decoder.decodeOut(instr);
    factory ??= new InstructionInfoFactory();
    const info = factory.info(instr);
    const nextRip = rip + BigInt(instr.length);
    const addrMask = instr.memoryDisplSize === 2 || bits === 16 ? 0xffffn : bits === 32 ? 0xffff_ffffn : 0xffff_ffff_ffff_ffffn;
    for (const m of info.usedMemory()) {
      let ea = m.displacement;
      if (m.base !== Register.None) ea += regValue(cpu, m.base, nextRip);
      if (m.index !== Register.None) ea += regValue(cpu, m.index, nextRip) * BigInt(m.scale);
      ea &= long ? 0xffff_ffff_ffff_ffffn : addrMask;
      const segName = Register[m.segment] ?? '';
      const segIdx = SEG_INDEX[segName];
      if (segIdx !== undefined && (!long || segIdx === SEG.FS || segIdx === SEG.GS)) ea += cpu.segBase(segIdx);
      ea &= 0xffff_ffff_ffff_ffffn;
      const size = BigInt(Math.max(1, MemorySizeExt.size(m.memorySize)));
      m.free();
      if (ea <= page + 0xfffn && ea + size - 1n >= page) return ea > page ? ea : page;
    }
    return page;
  } finally {
    instr.free();
    decoder.free();
  }
}
