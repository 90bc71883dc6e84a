/** Skips the instruction at RIP (for writes the hypervisor drops), decoded with iced-x86. */
import { Decoder, DecoderOptions } from 'iced-x86';
import type { X86Cpu } from '../machine/cpu/x86-cpu.js';

export function skipInstruction(cpu: X86Cpu): boolean {
  const rip = cpu.readRip();
  const bytes = cpu.fetchBytes(rip, 15);
  if (bytes.length === 0) return false;
  const mode = cpu.mode();
  const decoder = new Decoder(mode === 'long' ? 64 : mode === 'real' ? 16 : 32, bytes, DecoderOptions.None);
  try {
    const instr = decoder.decode();
    const len = instr.length;
    instr.free();
    if (len === 0) return false;
    cpu.completeInstruction(rip + BigInt(len));
    return true;
  } finally {
    decoder.free();
  }
}
