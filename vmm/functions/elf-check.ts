/**
 * Checks an uploaded function ELF before it is stored, with the same rules the
 * runtime applies when it loads one (guests/function-runtime/main.c), so a bad
 * upload is refused at POST /functions naming the field and offset.
 */
import { FN_ELF_MAX } from './abi.js';

export class FunctionElfError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'FunctionElfError';
  }
}

const USER_BASE = 0x400000n;
const USER_LIMIT = 0x500000n;

export interface FunctionElfInfo {
  entry: number;
  segments: { vaddr: number; memsz: number; flags: string }[];
}

export function checkFunctionElf(elf: Uint8Array, what = 'function ELF'): FunctionElfInfo {
  const bad = (field: string, off: number, why: string): never => {
    throw new FunctionElfError(`${what}: ${field} (offset ${off}): ${why}`);
  };
  if (elf.length < 64) bad('header', 0, `${elf.length} bytes is shorter than an ELF64 header`);
  if (elf.length > FN_ELF_MAX) bad('size', 0, `${elf.length} bytes is more than the runtime's ${FN_ELF_MAX}`);
  if (elf[0] !== 0x7f || elf[1] !== 0x45 || elf[2] !== 0x4c || elf[3] !== 0x46) bad('e_ident', 0, 'not an ELF file');
  if (elf[4] !== 2) bad('EI_CLASS', 4, 'not ELF64');
  if (elf[5] !== 1) bad('EI_DATA', 5, 'not little-endian');
  const d = new DataView(elf.buffer, elf.byteOffset, elf.byteLength);
  if (d.getUint16(16, true) !== 2) bad('e_type', 16, `${d.getUint16(16, true)} is not ET_EXEC (a static executable)`);
  if (d.getUint16(18, true) !== 62) bad('e_machine', 18, `${d.getUint16(18, true)} is not x86-64 (62)`);
  const entry = d.getBigUint64(24, true);
  const phoff = d.getBigUint64(32, true);
  const phentsize = d.getUint16(54, true);
  const phnum = d.getUint16(56, true);
  if (phentsize !== 56) bad('e_phentsize', 54, `${phentsize} is not 56`);
  if (phnum === 0 || phnum > 16) bad('e_phnum', 56, `${phnum} program headers (1..16 allowed)`);
  if (phoff > BigInt(elf.length) || BigInt(phnum * 56) > BigInt(elf.length) - phoff) bad('e_phoff', 32, 'program headers run past the end of the file');
  const segments: FunctionElfInfo['segments'] = [];
  let entryOk = false;
  for (let i = 0; i < phnum; i++) {
    const o = Number(phoff) + i * 56;
    if (d.getUint32(o, true) !== 1) continue; // PT_LOAD only
    const flags = d.getUint32(o + 4, true);
    const offset = d.getBigUint64(o + 8, true);
    const vaddr = d.getBigUint64(o + 16, true);
    const filesz = d.getBigUint64(o + 32, true);
    const memsz = d.getBigUint64(o + 40, true);
    const at = `program header ${i}`;
    if (filesz > memsz) bad(`${at} p_filesz`, o + 32, 'larger than p_memsz');
    if (offset > BigInt(elf.length) || filesz > BigInt(elf.length) - offset) bad(`${at} p_offset`, o + 8, 'segment bytes run past the end of the file');
    if (vaddr < USER_BASE || vaddr >= USER_LIMIT || memsz > USER_LIMIT - vaddr)
      bad(`${at} p_vaddr`, o + 16, `0x${vaddr.toString(16)}+0x${memsz.toString(16)} is outside the function window 0x400000-0x500000`);
    if (flags & 1 && entry >= vaddr && entry < vaddr + memsz) entryOk = true;
    segments.push({ vaddr: Number(vaddr), memsz: Number(memsz), flags: `${flags & 4 ? 'r' : '-'}${flags & 2 ? 'w' : '-'}${flags & 1 ? 'x' : '-'}` });
  }
  if (!entryOk) bad('e_entry', 24, `0x${entry.toString(16)} is not inside an executable PT_LOAD segment`);
  return { entry: Number(entry), segments };
}
