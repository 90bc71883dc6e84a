/**
 * Multiboot v1 image parsing: finds and checks the Multiboot header, parses
 * the ELF (with elfy) or applies the a.out kludge, validates everything and
 * returns a load plan. Pure TypeScript: no emulator involved.
 */
import elfy from 'elfy';
import { MultibootError, hex } from './errors.js';
import { describeKernel, identifyKernel, SUPPORTED_FORMATS } from '../linux/kernel-format.js';

export const MULTIBOOT_HEADER_MAGIC = 0x1badb002;
/** EAX at guest entry. */
export const MULTIBOOT_BOOTLOADER_MAGIC = 0x2badb002;
/** The header must lie entirely within this many bytes from the file start. */
export const MULTIBOOT_SEARCH_BYTES = 8192;

/** Multiboot header flag bits. */
export const MB_HEADER_PAGE_ALIGN = 1 << 0;
export const MB_HEADER_MEMORY_INFO = 1 << 1;
export const MB_HEADER_VIDEO_MODE = 1 << 2;
export const MB_HEADER_AOUT_KLUDGE = 1 << 16;
/** Required (bits 0-15) features this loader implements. */
const SUPPORTED_REQUIRED_FLAGS = MB_HEADER_PAGE_ALIGN | MB_HEADER_MEMORY_INFO;

const FOUR_GIB = 0x1_0000_0000;

const EM_386 = 3;
const EM_X86_64 = 62;
const ET_EXEC = 2;
const PT_LOAD = 1;
const PT_DYNAMIC = 2;
const PT_INTERP = 3;

export interface MultibootAoutKludge {
  headerAddr: number;
  loadAddr: number;
  /** 0 = load to the end of the file. */
  loadEndAddr: number;
  /** 0 = no bss. */
  bssEndAddr: number;
  entryAddr: number;
}

export interface MultibootHeaderInfo {
  /** File offset of the header's magic. */
  offset: number;
  flags: number;
  checksum: number;
  /** Bit 0: align modules on 4 KiB boundaries. */
  pageAlign: boolean;
  /** Bit 1: the kernel wants mem_lower/mem_upper (and the memory map). */
  memoryInfo: boolean;
  /** Bit 16: load addresses come from the header (a.out kludge). */
  aoutKludge: boolean;
  /** The address fields, present when aoutKludge is set. */
  kludge?: MultibootAoutKludge;
}

export interface MultibootSegment {
  /** Guest-physical load address. */
  paddr: number;
  /** Bytes occupied in memory; [paddr + fileBytes.length, paddr + memSize) is zero-filled (bss). */
  memSize: number;
  /** The bytes to copy to paddr (a copy, not a view of the input). */
  fileBytes: Uint8Array;
  /** Where fileBytes came from in the file. */
  fileOffset: number;
  /** Link-time virtual address (exact, also for 64-bit high-half addresses). Equals paddr for the a.out kludge. */
  vaddr: bigint;
  /** Program header index, or null for the a.out kludge image. */
  programHeader: number | null;
  /** ELF p_flags (PF_X = 1, PF_W = 2, PF_R = 4); 7 for the a.out kludge image. */
  flags: number;
}

export interface MultibootLoadPlan {
  fileName: string;
  format: 'elf32' | 'elf64' | 'aout-kludge';
  /** ELF e_machine as a name; null for the a.out kludge. */
  machine: 'i386' | 'x86_64' | null;
  header: MultibootHeaderInfo;
  /** Loadable segments with memSize > 0, sorted by paddr, non-overlapping. */
  segments: MultibootSegment[];
  /** Guest-physical entry point (EIP at entry, paging off). */
  entry: number;
  /** The entry as written in the file: e_entry (virtual) or entry_addr. */
  entryVirtual: bigint;
  /** Lowest paddr of any segment. */
  loadStart: number;
  /** One past the highest byte of any segment. */
  loadEnd: number;
}

export interface ParseMultibootOptions {
  /**
   * Guest RAM size in bytes: every segment must lie in [0, ramSize).
   * Defaults to 4 GiB (only the 32-bit physical address space is checked).
   */
  ramSize?: number;
}

class Reader {
  private readonly view: DataView;
  constructor(readonly bytes: Uint8Array) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }
  get length(): number {
    return this.bytes.length;
  }
  u8(off: number): number {
    return this.view.getUint8(off);
  }
  u16(off: number): number {
    return this.view.getUint16(off, true);
  }
  u32(off: number): number {
    return this.view.getUint32(off, true);
  }
  u64(off: number): bigint {
    return this.view.getBigUint64(off, true);
  }
  word(off: number, width: 4 | 8): bigint {
    return width === 4 ? BigInt(this.u32(off)) : this.u64(off);
  }
}

const FLAG_NAMES: Record<number, string> = {
  2: 'video mode (bit 2)',
};

function describeFlagBits(bits: number): string {
  const names: string[] = [];
  for (let b = 0; b < 16; b++) {
    if (bits & (1 << b)) names.push(FLAG_NAMES[b] ?? `bit ${b}`);
  }
  return names.join(', ');
}

/** Locate and check the Multiboot header (QEMU/GRUB semantics: 4-byte aligned, within 8 KiB). */
function findHeader(r: Reader, file: string): MultibootHeaderInfo {
  const limit = Math.min(r.length, MULTIBOOT_SEARCH_BYTES);
  let badChecksum: { offset: number; checksum: number; expected: number } | undefined;
  for (let off = 0; off + 12 <= limit; off += 4) {
    if (r.u32(off) !== MULTIBOOT_HEADER_MAGIC) continue;
    const flags = r.u32(off + 4);
    const checksum = r.u32(off + 8);
    if (((MULTIBOOT_HEADER_MAGIC + flags + checksum) >>> 0) !== 0) {
      badChecksum ??= { offset: off, checksum, expected: (0x1_0000_0000 - ((MULTIBOOT_HEADER_MAGIC + flags) >>> 0)) >>> 0 };
      continue;
    }
    return checkHeader(r, file, off, flags, checksum);
  }
  if (badChecksum) {
    throw new MultibootError(
      file,
      badChecksum.offset + 8,
      'multiboot header checksum',
      `${hex(badChecksum.checksum)} is wrong: magic + flags + checksum must be 0 mod 2^32 (expected ${hex(badChecksum.expected)})`,
    );
  }
  // Say what the file is instead (a Linux bzImage, a PVH vmlinux, gzip data...) and what is supported.
  let what: string;
  try {
    what = describeKernel(identifyKernel(r.bytes, file));
  } catch {
    what = 'a malformed ELF file';
  }
  throw new MultibootError(
    file,
    0,
    'multiboot header',
    `not found: no 4-byte aligned magic ${hex(MULTIBOOT_HEADER_MAGIC)} with a valid checksum in the first ${limit} bytes (file size ${hex(r.length)}); the file is ${what}; ${SUPPORTED_FORMATS}`,
  );
}

function checkHeader(r: Reader, file: string, off: number, flags: number, checksum: number): MultibootHeaderInfo {
  const unsupported = flags & 0xffff & ~SUPPORTED_REQUIRED_FLAGS;
  if (unsupported !== 0) {
    throw new MultibootError(
      file,
      off + 4,
      'multiboot header flags',
      `${hex(flags)} require unsupported features: ${describeFlagBits(unsupported)}; bits 0-15 are mandatory, so the image is refused`,
    );
  }
  const header: MultibootHeaderInfo = {
    offset: off,
    flags,
    checksum,
    pageAlign: (flags & MB_HEADER_PAGE_ALIGN) !== 0,
    memoryInfo: (flags & MB_HEADER_MEMORY_INFO) !== 0,
    aoutKludge: (flags & MB_HEADER_AOUT_KLUDGE) !== 0,
  };
  if (header.aoutKludge) {
    if (off + 32 > r.length) {
      throw new MultibootError(
        file,
        off + 12,
        'multiboot header a.out kludge fields',
        `are truncated: flags bit 16 needs 32 header bytes from ${hex(off)} but the file ends at ${hex(r.length)}`,
      );
    }
    if (off + 32 > MULTIBOOT_SEARCH_BYTES) {
      throw new MultibootError(file, off + 12, 'multiboot header a.out kludge fields', `extend past the first ${MULTIBOOT_SEARCH_BYTES} bytes of the file`);
    }
    header.kludge = {
      headerAddr: r.u32(off + 12),
      loadAddr: r.u32(off + 16),
      loadEndAddr: r.u32(off + 20),
      bssEndAddr: r.u32(off + 24),
      entryAddr: r.u32(off + 28),
    };
  }
  return header;
}

function checkRamRange(file: string, fieldOffset: number, field: string, start: number, size: number, ramSize: number): void {
  const end = start + size;
  if (end > FOUR_GIB) {
    throw new MultibootError(file, fieldOffset, field, `range [${hex(start)}, ${hex(end)}) exceeds the 32-bit physical address space`);
  }
  if (end > ramSize) {
    throw new MultibootError(file, fieldOffset, field, `range [${hex(start)}, ${hex(end)}) is outside RAM (${hex(ramSize)} bytes)`);
  }
}

function planFromKludge(r: Reader, file: string, header: MultibootHeaderInfo, ramSize: number): MultibootLoadPlan {
  const k = header.kludge!;
  const h = header.offset;
  if (k.loadAddr > k.headerAddr) {
    throw new MultibootError(file, h + 16, 'multiboot header load_addr', `${hex(k.loadAddr)} is above header_addr ${hex(k.headerAddr)}`);
  }
  const textOffset = h - (k.headerAddr - k.loadAddr);
  if (textOffset < 0) {
    throw new MultibootError(
      file,
      h + 12,
      'multiboot header header_addr',
      `${hex(k.headerAddr)} - load_addr ${hex(k.loadAddr)} = ${hex(k.headerAddr - k.loadAddr)} exceeds the header's file offset ${hex(h)}`,
    );
  }
  let loadSize: number;
  if (k.loadEndAddr === 0) {
    loadSize = r.length - textOffset;
  } else {
    if (k.loadEndAddr < k.loadAddr) {
      throw new MultibootError(file, h + 20, 'multiboot header load_end_addr', `${hex(k.loadEndAddr)} is below load_addr ${hex(k.loadAddr)}`);
    }
    loadSize = k.loadEndAddr - k.loadAddr;
    if (textOffset + loadSize > r.length) {
      throw new MultibootError(
        file,
        h + 20,
        'multiboot header load_end_addr',
        `${hex(k.loadEndAddr)} needs ${hex(loadSize)} bytes from file offset ${hex(textOffset)} but the file size is ${hex(r.length)}`,
      );
    }
  }
  let memSize = loadSize;
  if (k.bssEndAddr !== 0) {
    if (k.bssEndAddr < k.loadAddr + loadSize) {
      throw new MultibootError(
        file,
        h + 24,
        'multiboot header bss_end_addr',
        `${hex(k.bssEndAddr)} is below the end of the loaded data ${hex(k.loadAddr + loadSize)}`,
      );
    }
    memSize = k.bssEndAddr - k.loadAddr;
  }
  if (memSize === 0) {
    throw new MultibootError(file, h + 16, 'multiboot header load_addr', `${hex(k.loadAddr)}: the a.out kludge image is empty`);
  }
  checkRamRange(file, h + 16, 'multiboot header load_addr', k.loadAddr, memSize, ramSize);
  if (k.entryAddr < k.loadAddr || k.entryAddr >= k.loadAddr + memSize) {
    throw new MultibootError(
      file,
      h + 28,
      'multiboot header entry_addr',
      `${hex(k.entryAddr)} is outside every segment: the image occupies [${hex(k.loadAddr)}, ${hex(k.loadAddr + memSize)})`,
    );
  }
  const segment: MultibootSegment = {
    paddr: k.loadAddr,
    memSize,
    fileBytes: new Uint8Array(r.bytes.subarray(textOffset, textOffset + loadSize)),
    fileOffset: textOffset,
    vaddr: BigInt(k.loadAddr),
    programHeader: null,
    flags: 7,
  };
  return {
    fileName: file,
    format: 'aout-kludge',
    machine: null,
    header,
    segments: [segment],
    entry: k.entryAddr,
    entryVirtual: BigInt(k.entryAddr),
    loadStart: k.loadAddr,
    loadEnd: k.loadAddr + memSize,
  };
}

interface ElfLayout {
  headerSize: number;
  width: 4 | 8;
  entry: number;
  phoff: number;
  ehsize: number;
  phentsize: number;
  phnum: number;
  phdrSize: number;
  ph: { type: number; flags: number; offset: number; vaddr: number; paddr: number; filesz: number; memsz: number; align: number };
}

const ELF32: ElfLayout = {
  headerSize: 52,
  width: 4,
  entry: 24,
  phoff: 28,
  ehsize: 40,
  phentsize: 42,
  phnum: 44,
  phdrSize: 32,
  ph: { type: 0, offset: 4, vaddr: 8, paddr: 12, filesz: 16, memsz: 20, flags: 24, align: 28 },
};

const ELF64: ElfLayout = {
  headerSize: 64,
  width: 8,
  entry: 24,
  phoff: 32,
  ehsize: 52,
  phentsize: 54,
  phnum: 56,
  phdrSize: 56,
  ph: { type: 0, flags: 4, offset: 8, vaddr: 16, paddr: 24, filesz: 32, memsz: 40, align: 48 },
};

function isElf(r: Reader): boolean {
  return r.length >= 4 && r.u8(0) === 0x7f && r.u8(1) === 0x45 && r.u8(2) === 0x4c && r.u8(3) === 0x46;
}

/** Run an elfy call; any exception becomes a MultibootError (elfy throws plain Errors and TypeErrors). */
function elfyCall<T>(file: string, offset: number, field: string, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof MultibootError) throw err;
    const msg = err instanceof Error ? err.message : String(err);
    throw new MultibootError(file, offset, field, `could not be parsed by elfy: ${msg}`);
  }
}

const isPowerOfTwo = (n: number): boolean => n > 0 && Number.isInteger(Math.log2(n));

function planFromElf(r: Reader, file: string, header: MultibootHeaderInfo, ramSize: number): MultibootLoadPlan {
  // e_ident, checked byte by byte before elfy sees the file.
  if (r.length < 16) {
    throw new MultibootError(file, 0, 'e_ident', `is truncated: the file has ${r.length} bytes, an ELF identification needs 16`);
  }
  const eiClass = r.u8(4);
  if (eiClass !== 1 && eiClass !== 2) {
    throw new MultibootError(file, 4, 'e_ident[EI_CLASS]', `${eiClass} is neither ELFCLASS32 (1) nor ELFCLASS64 (2)`);
  }
  const eiData = r.u8(5);
  if (eiData !== 1) {
    throw new MultibootError(file, 5, 'e_ident[EI_DATA]', `${eiData} is not ELFDATA2LSB (1): only little-endian x86 images are supported`);
  }
  const eiVersion = r.u8(6);
  if (eiVersion !== 1) {
    throw new MultibootError(file, 6, 'e_ident[EI_VERSION]', `${eiVersion} is not EV_CURRENT (1)`);
  }
  const L = eiClass === 1 ? ELF32 : ELF64;
  const format = eiClass === 1 ? 'elf32' : 'elf64';
  if (r.length < L.headerSize) {
    throw new MultibootError(file, 0, 'ELF header', `is truncated: ${format} needs ${L.headerSize} bytes, the file has ${r.length}`);
  }

  const buf = Buffer.from(r.bytes.buffer, r.bytes.byteOffset, r.bytes.byteLength);
  const parser = new elfy.Parser();
  const eh = elfyCall(file, 0, 'ELF header', () => parser.parseHeader(buf));

  // Validate what elfy returned, field by field.
  if (eh.class !== (eiClass === 1 ? '32' : '64') || eh.endian !== 'lsb') {
    throw new MultibootError(file, 4, 'e_ident', `was decoded inconsistently by elfy (class ${eh.class}, endian ${eh.endian})`);
  }
  const eType = r.u16(16);
  if (eh.type !== 'exec' || eType !== ET_EXEC) {
    throw new MultibootError(file, 16, 'e_type', `${hex(eType)}${eh.type ? ` (${eh.type})` : ''} is not ET_EXEC (2): only executables can be booted`);
  }
  const eMachine = r.u16(18);
  const expectedMachine = eiClass === 1 ? EM_386 : EM_X86_64;
  const machineName = eiClass === 1 ? '386' : 'amd64';
  if (eMachine !== expectedMachine || eh.machine !== machineName) {
    throw new MultibootError(
      file,
      18,
      'e_machine',
      `${eMachine}${eh.machine ? ` (${eh.machine})` : ''} is an unsupported machine for ${format}: expected ${expectedMachine} (${eiClass === 1 ? 'EM_386' : 'EM_X86_64'})`,
    );
  }
  if (eh.version !== 1) {
    throw new MultibootError(file, 20, 'e_version', `${hex(eh.version >>> 0)} is not EV_CURRENT (1)`);
  }
  if (eh.ehsize < L.headerSize || eh.ehsize > r.length) {
    throw new MultibootError(file, L.ehsize, 'e_ehsize', `${hex(eh.ehsize)} is invalid: must be at least ${hex(L.headerSize)} and within the file (size ${hex(r.length)})`);
  }
  if (eh.phnum === 0 || eh.phoff === 0) {
    throw new MultibootError(file, eh.phnum === 0 ? L.phnum : L.phoff, eh.phnum === 0 ? 'e_phnum' : 'e_phoff', 'is 0: the image has no program headers');
  }
  if (eh.phnum === 0xffff) {
    throw new MultibootError(file, L.phnum, 'e_phnum', '0xffff (PN_XNUM, extended numbering) is not supported');
  }
  if (eh.phentsize !== L.phdrSize) {
    throw new MultibootError(file, L.phentsize, 'e_phentsize', `${hex(eh.phentsize)} is not the ${format} program header size ${hex(L.phdrSize)}`);
  }
  const tableEnd = eh.phoff + eh.phnum * eh.phentsize;
  if (!Number.isSafeInteger(eh.phoff) || tableEnd > r.length) {
    throw new MultibootError(
      file,
      L.phoff,
      'e_phoff',
      `${hex(r.word(L.phoff, L.width))}: the program header table (${eh.phnum} x ${hex(eh.phentsize)} bytes) exceeds file size ${hex(r.length)}`,
    );
  }
  const entryVirtual = r.word(L.entry, L.width);
  if (BigInt(Math.round(eh.entry)) !== entryVirtual && entryVirtual < 2n ** 53n) {
    throw new MultibootError(file, L.entry, 'e_entry', `was decoded inconsistently by elfy (${eh.entry} vs ${hex(entryVirtual)})`);
  }

  const programs = elfyCall(file, eh.phoff, 'program header table', () => parser.parsePrograms(buf, eh));
  if (programs.length !== eh.phnum) {
    throw new MultibootError(file, L.phnum, 'e_phnum', `${eh.phnum} does not match the ${programs.length} program headers elfy returned`);
  }

  const segments: MultibootSegment[] = [];
  let loadCount = 0;
  programs.forEach((p, i) => {
    const base = eh.phoff + i * eh.phentsize;
    const at = (field: keyof ElfLayout['ph']) => base + L.ph[field];
    const name = (field: string) => `program header ${i}: ${field}`;
    const pType = r.u32(at('type'));
    if (pType === PT_INTERP || pType === PT_DYNAMIC) {
      throw new MultibootError(
        file,
        at('type'),
        name('p_type'),
        `${pType === PT_INTERP ? 'PT_INTERP' : 'PT_DYNAMIC'}: dynamically linked images are not supported`,
      );
    }
    if (pType !== PT_LOAD) return; // PT_NOTE, PT_GNU_STACK, PT_PHDR, ...: nothing to load
    if (p.type !== 'load') {
      throw new MultibootError(file, at('type'), name('p_type'), `was decoded inconsistently by elfy (${String(p.type)})`);
    }
    loadCount++;
    const rawOffset = r.word(at('offset'), L.width);
    const rawFilesz = r.word(at('filesz'), L.width);
    const rawMemsz = r.word(at('memsz'), L.width);
    const rawPaddr = r.word(at('paddr'), L.width);
    const rawAlign = r.word(at('align'), L.width);
    const vaddr = r.word(at('vaddr'), L.width);
    // elfy's numbers are exact below 2^53; every value we keep must be far below that.
    if (rawFilesz > rawMemsz) {
      throw new MultibootError(file, at('filesz'), name('p_filesz'), `${hex(rawFilesz)} exceeds p_memsz ${hex(rawMemsz)}`);
    }
    if (rawOffset > BigInt(r.length)) {
      throw new MultibootError(file, at('offset'), name('p_offset'), `${hex(rawOffset)} is beyond the end of the file (size ${hex(r.length)})`);
    }
    if (rawOffset + rawFilesz > BigInt(r.length)) {
      throw new MultibootError(
        file,
        at('filesz'),
        name('p_filesz'),
        `${hex(rawFilesz)} exceeds file size ${hex(r.length)} (p_offset ${hex(rawOffset)})`,
      );
    }
    if (rawAlign > 1n && !isPowerOfTwo(Number(rawAlign))) {
      throw new MultibootError(file, at('align'), name('p_align'), `${hex(rawAlign)} is not a power of two`);
    }
    if (rawPaddr + rawMemsz > BigInt(FOUR_GIB)) {
      throw new MultibootError(
        file,
        at('paddr'),
        name('p_paddr'),
        `range [${hex(rawPaddr)}, ${hex(rawPaddr + rawMemsz)}) exceeds the 32-bit physical address space`,
      );
    }
    const offset = Number(rawOffset);
    const filesz = Number(rawFilesz);
    const memsz = Number(rawMemsz);
    const paddr = Number(rawPaddr);
    if (p.offset !== offset || p.filesz !== filesz || p.memsz !== memsz || p.paddr !== paddr) {
      throw new MultibootError(file, base, `program header ${i}`, 'was decoded inconsistently by elfy');
    }
    if (memsz === 0) return;
    checkRamRange(file, at('paddr'), name('p_paddr'), paddr, memsz, ramSize);
    segments.push({
      paddr,
      memSize: memsz,
      fileBytes: new Uint8Array(r.bytes.subarray(offset, offset + filesz)),
      fileOffset: offset,
      vaddr,
      programHeader: i,
      flags: r.u32(at('flags')),
    });
  });
  if (segments.length === 0) {
    throw new MultibootError(file, L.phnum, 'e_phnum', `${eh.phnum} program header(s) but ${loadCount === 0 ? 'no PT_LOAD segment' : 'every PT_LOAD segment is empty'}: nothing to load`);
  }

  segments.sort((a, b) => a.paddr - b.paddr);
  for (let k = 1; k < segments.length; k++) {
    const prev = segments[k - 1]!;
    const cur = segments[k]!;
    if (cur.paddr < prev.paddr + prev.memSize) {
      const i = cur.programHeader!;
      throw new MultibootError(
        file,
        eh.phoff + i * eh.phentsize + L.ph.paddr,
        `program header ${i}: p_paddr`,
        `range [${hex(cur.paddr)}, ${hex(cur.paddr + cur.memSize)}) overlaps program header ${prev.programHeader} [${hex(prev.paddr)}, ${hex(prev.paddr + prev.memSize)})`,
      );
    }
  }

  // Entry: e_entry is a virtual address; translate it through the segment
  // that contains it (same as GRUB; QEMU jumps to e_entry unchanged, which is
  // the same thing whenever vaddr == paddr for that segment).
  const holder = segments.find((s) => entryVirtual >= s.vaddr && entryVirtual < s.vaddr + BigInt(s.memSize));
  if (!holder) {
    throw new MultibootError(file, L.entry, 'e_entry', `${hex(entryVirtual)} is outside every segment`);
  }
  const entry = holder.paddr + Number(entryVirtual - holder.vaddr);

  return {
    fileName: file,
    format,
    machine: eiClass === 1 ? 'i386' : 'x86_64',
    header,
    segments,
    entry,
    entryVirtual,
    loadStart: segments[0]!.paddr,
    loadEnd: Math.max(...segments.map((s) => s.paddr + s.memSize)),
  };
}

/**
 * Parse a Multiboot v1 image (ELF32 i386, ELF64 x86-64, or anything with the
 * a.out kludge) into a load plan. Every problem is reported as a
 * MultibootError naming the file, the byte offset and the field.
 */
export function parseMultibootImage(bytes: Uint8Array, fileName: string, options: ParseMultibootOptions = {}): MultibootLoadPlan {
  const ramSize = options.ramSize ?? FOUR_GIB;
  if (!Number.isSafeInteger(ramSize) || ramSize <= 0) throw new RangeError(`parseMultibootImage: ramSize must be a positive integer, got ${ramSize}`);
  if (!(bytes instanceof Uint8Array)) throw new TypeError('parseMultibootImage: bytes must be a Uint8Array');
  const r = new Reader(bytes);
  const header = findHeader(r, fileName);
  if (header.aoutKludge) return planFromKludge(r, fileName, header, ramSize);
  if (!isElf(r)) {
    const magic = Array.from(bytes.subarray(0, 4), (b) => b.toString(16).padStart(2, '0')).join(' ');
    throw new MultibootError(
      fileName,
      0,
      'e_ident',
      `magic [${magic}] is not ELF (7f 45 4c 46) and the multiboot header at ${hex(header.offset)} does not set the a.out kludge (flags bit 16)`,
    );
  }
  return planFromElf(r, fileName, header, ramSize);
}

/** A segment's full memory image (file bytes followed by zeroed bss). */
export function materializeSegment(segment: MultibootSegment): Uint8Array {
  const out = new Uint8Array(segment.memSize);
  out.set(segment.fileBytes);
  return out;
}

/**
 * Copy a load plan into a flat RAM buffer that starts at guest-physical
 * address ramBase (default 0): file bytes are copied, bss is zeroed.
 */
export function loadIntoRam(plan: MultibootLoadPlan, ram: Uint8Array, ramBase = 0): void {
  for (const s of plan.segments) {
    const off = s.paddr - ramBase;
    if (off < 0 || off + s.memSize > ram.length) {
      throw new RangeError(`${plan.fileName}: segment [${hex(s.paddr)}, ${hex(s.paddr + s.memSize)}) does not fit the RAM buffer`);
    }
    ram.set(s.fileBytes, off);
    ram.fill(0, off + s.fileBytes.length, off + s.memSize);
  }
}
