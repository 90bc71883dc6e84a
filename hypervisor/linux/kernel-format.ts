/**
 * What kind of kernel file this is, from its first bytes: Multiboot v1, a
 * Linux bzImage (x86 boot protocol), an ELF with a PVH entry note
 * (XEN_ELFNOTE_PHYS32_ENTRY), or something we name for the error message.
 */
import { LinuxImageError } from './errors.js';

/** "HdrS" at 0x202: the Linux/x86 boot protocol's setup header signature. */
export const SETUP_HEADER_MAGIC = 0x53726448;
/** The Xen ELF note that carries the 32-bit PVH entry point. */
export const XEN_ELFNOTE_PHYS32_ENTRY = 18;
const MULTIBOOT_HEADER_MAGIC = 0x1badb002;
const MULTIBOOT_SEARCH_BYTES = 8192;

export const SUPPORTED_FORMATS =
  'supported: a Multiboot v1 kernel (ELF or a.out kludge), a Linux bzImage (boot protocol 2.06 or later), or an ELF vmlinux with a PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY)';

export type KernelFormat =
  | { kind: 'multiboot' }
  | { kind: 'bzimage'; protocol: number }
  | { kind: 'pvh'; entry: number }
  | { kind: 'other'; what: string };

const u16 = (b: Uint8Array, o: number): number => (o + 2 <= b.length ? b[o]! | (b[o + 1]! << 8) : 0);
const u32 = (b: Uint8Array, o: number): number => (o + 4 <= b.length ? (b[o]! | (b[o + 1]! << 8) | (b[o + 2]! << 16) | (b[o + 3]! << 24)) >>> 0 : 0);
const u64 = (b: Uint8Array, o: number): number => u32(b, o) + u32(b, o + 4) * 0x1_0000_0000;

function hasMultibootHeader(b: Uint8Array): boolean {
  const limit = Math.min(b.length, MULTIBOOT_SEARCH_BYTES);
  for (let off = 0; off + 12 <= limit; off += 4) {
    if (u32(b, off) !== MULTIBOOT_HEADER_MAGIC) continue;
    if (((MULTIBOOT_HEADER_MAGIC + u32(b, off + 4) + u32(b, off + 8)) >>> 0) === 0) return true;
  }
  return false;
}

/** A Linux bzImage: the boot sector's 0xAA55 and "HdrS" in the setup header. */
export function bzImageProtocol(b: Uint8Array): number | null {
  return b.length >= 0x260 && u16(b, 0x1fe) === 0xaa55 && u32(b, 0x202) === SETUP_HEADER_MAGIC ? u16(b, 0x206) : null;
}

export interface ElfNote {
  name: string;
  type: number;
  desc: Uint8Array;
  /** File offset of the descriptor. */
  descOffset: number;
}

/** The notes of an ELF32/ELF64 little-endian file's PT_NOTE segments (malformed notes end the walk). */
export function elfNotes(b: Uint8Array, fileName: string): ElfNote[] {
  const is64 = b[4] === 2;
  const phoff = is64 ? u64(b, 0x20) : u32(b, 0x1c);
  const phentsize = u16(b, is64 ? 0x36 : 0x2a);
  const phnum = u16(b, is64 ? 0x38 : 0x2c);
  const notes: ElfNote[] = [];
  if (phentsize < (is64 ? 56 : 32)) throw new LinuxImageError(fileName, is64 ? 0x36 : 0x2a, 'e_phentsize', `${phentsize} is too small for an ELF${is64 ? 64 : 32} program header`);
  for (let i = 0; i < phnum; i++) {
    const ph = phoff + i * phentsize;
    if (ph + phentsize > b.length) throw new LinuxImageError(fileName, ph, `program header ${i}`, `lies past the end of the file (${b.length} bytes)`);
    if (u32(b, ph) !== 4) continue; // PT_NOTE
    const off = is64 ? u64(b, ph + 8) : u32(b, ph + 4);
    const size = is64 ? u64(b, ph + 32) : u32(b, ph + 16);
    if (off + size > b.length) throw new LinuxImageError(fileName, ph, `program header ${i}: PT_NOTE`, `[${off}, ${off + size}) lies past the end of the file (${b.length} bytes)`);
    let p = off;
    while (p + 12 <= off + size) {
      const namesz = u32(b, p);
      const descsz = u32(b, p + 4);
      const type = u32(b, p + 8);
      const nameAt = p + 12;
      const descAt = nameAt + ((namesz + 3) & ~3);
      const next = descAt + ((descsz + 3) & ~3);
      if (next > off + size) break;
      const name = new TextDecoder().decode(b.subarray(nameAt, nameAt + namesz)).replace(/\0+$/, '');
      notes.push({ name, type, desc: b.subarray(descAt, descAt + descsz), descOffset: descAt });
      p = next;
    }
  }
  return notes;
}

/** The PVH entry of an ELF vmlinux, or null if it has no XEN_ELFNOTE_PHYS32_ENTRY note. */
export function pvhEntry(b: Uint8Array, fileName: string): number | null {
  if (!(b.length >= 0x40 && u32(b, 0) === 0x464c457f && (b[4] === 1 || b[4] === 2) && b[5] === 1)) return null;
  const note = elfNotes(b, fileName).find((n) => n.name === 'Xen' && n.type === XEN_ELFNOTE_PHYS32_ENTRY);
  if (!note) return null;
  if (note.desc.length !== 4 && note.desc.length !== 8) throw new LinuxImageError(fileName, note.descOffset, 'XEN_ELFNOTE_PHYS32_ENTRY', `descriptor is ${note.desc.length} bytes, expected 4 or 8`);
  return u32(note.desc, 0);
}

/** Names a file that is not a kernel we load, for the error message. */
function describeOther(b: Uint8Array): string {
  if (b.length >= 4 && u32(b, 0) === 0x464c457f) {
    const cls = b[4] === 2 ? 'ELF64' : b[4] === 1 ? 'ELF32' : 'ELF';
    const machine = u16(b, 0x12);
    const type = u16(b, 0x10);
    const m = machine === 62 ? 'x86-64' : machine === 3 ? 'i386' : `e_machine ${machine}`;
    const t = type === 2 ? 'executable' : type === 3 ? 'shared object' : type === 1 ? 'relocatable object' : `e_type ${type}`;
    return `an ${cls} ${m} ${t} without a Multiboot header or a PVH entry note`;
  }
  if (u16(b, 0) === 0x5a4d) return 'a PE/COFF (EFI or Windows) executable';
  if (u16(b, 0) === 0x8b1f) return 'gzip-compressed data (decompress it first; an initramfs goes to --initrd)';
  if (u32(b, 0) === 0x184c2102 || u32(b, 0) === 0x184d2204) return 'LZ4-compressed data';
  if (b.length >= 6 && b[0] === 0xfd && b[1] === 0x37 && b[2] === 0x7a && b[3] === 0x58 && b[4] === 0x5a) return 'xz-compressed data';
  if (b.length >= 6 && new TextDecoder().decode(b.subarray(0, 6)) === '070701') return 'a cpio archive (an initramfs: pass it with --initrd)';
  if (b.length >= 0x200 && u16(b, 0x1fe) === 0xaa55) return 'a boot sector (MBR) without a Linux setup header';
  return 'not a kernel format we know';
}

export function identifyKernel(b: Uint8Array, fileName: string): KernelFormat {
  // A bzImage may also carry a Multiboot header? No: Linux does not. Multiboot comes first as QEMU's -kernel checks it first.
  if (hasMultibootHeader(b)) return { kind: 'multiboot' };
  const protocol = bzImageProtocol(b);
  if (protocol !== null) return { kind: 'bzimage', protocol };
  const entry = pvhEntry(b, fileName);
  if (entry !== null) return { kind: 'pvh', entry };
  return { kind: 'other', what: describeOther(b) };
}

/** One phrase for an error: "a Linux bzImage (boot protocol 2.15)". */
export function describeKernel(f: KernelFormat): string {
  switch (f.kind) {
    case 'multiboot':
      return 'a Multiboot v1 kernel';
    case 'bzimage':
      return `a Linux bzImage (boot protocol ${f.protocol >> 8}.${(f.protocol & 0xff).toString().padStart(2, '0')})`;
    case 'pvh':
      return `an ELF vmlinux with a PVH entry note (entry 0x${f.entry.toString(16)})`;
    case 'other':
      return f.what;
  }
}
