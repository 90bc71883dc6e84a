/**
 * parseMultibootImage(): good ELF32 / ELF64 / a.out-kludge images built with
 * the real toolchain (and the project's guests), and every malformed case
 * with the exact message naming file, offset and field.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import elfy from 'elfy';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  MultibootError,
  loadIntoRam,
  materializeSegment,
  parseMultibootImage,
  type MultibootLoadPlan,
} from '../../hypervisor/multiboot/index.js';
import { buildGuests } from '../../tools/build-guests.mjs';

const hasToolchain = ['gcc', 'ld', 'objcopy'].every((t) => spawnSync(t, ['--version'], { stdio: 'ignore' }).status === 0);

const TINY_SRC = `
    .section .text, "ax"
    .balign 4
mbh:
    .long 0x1BADB002
    .long 0x00000003
    .long -(0x1BADB002 + 0x00000003)
    .globl _start
_start:
    movl $0x2a, %eax
    outl %eax, $0xf4
1:  hlt
    jmp 1b
    .section .data, "aw"
    .long 0x12345678
    .section .bss, "aw", @nobits
    .skip 0x2000
    .section .note.GNU-stack, "", @progbits
`;

const TINY32_LD = `
ENTRY(_start)
PHDRS { text PT_LOAD; data PT_LOAD; }
SECTIONS {
  . = 0x100000;
  .text : { *(.text) } :text
  . = 0x200000;
  .data : { *(.data) } :data
  .bss : { *(.bss) } :data
  /DISCARD/ : { *(.note*) *(.comment) }
}
`;

// 64-bit: data linked in the high half, loaded at 2 MiB.
const TINY64_LD = `
ENTRY(_start)
PHDRS { text PT_LOAD; data PT_LOAD; }
SECTIONS {
  . = 0x100000;
  .text : { *(.text) } :text
  .data 0xFFFFFFFF80200000 : AT(0x200000) { *(.data) } :data
  .bss : AT(0x200004) { *(.bss) } :data
  /DISCARD/ : { *(.note*) *(.comment) }
}
`;

// Flat binary with the a.out kludge: the header gives all addresses.
const KLUDGE_SRC = `
    .section .text, "ax"
    .balign 4
mbh:
    .long 0x1BADB002
    .long 0x00010003
    .long -(0x1BADB002 + 0x00010003)
    .long mbh
    .long _load_start
    .long _load_end
    .long _bss_end
    .long _start
    .globl _start
_start:
    movl $0x2a, %eax
    outl %eax, $0xf4
1:  hlt
    jmp 1b
    .section .data, "aw"
    .long 0xcafef00d
    .section .bss, "aw", @nobits
    .skip 0x3000
    .section .note.GNU-stack, "", @progbits
`;

const KLUDGE_LD = `
ENTRY(_start)
SECTIONS {
  . = 0x100000;
  _load_start = .;
  .text : { *(.text) }
  .data : { *(.data) }
  _load_end = .;
  .bss : { *(.bss) }
  _bss_end = .;
  /DISCARD/ : { *(.note*) *(.comment) }
}
`;

let work = '';
let tiny32: Uint8Array;
let tiny64: Uint8Array;
let kludge: Uint8Array;

function assemble(name: string, src: string, ld: string, bits: 32 | 64): string {
  writeFileSync(path.join(work, `${name}.S`), src);
  writeFileSync(path.join(work, `${name}.ld`), ld);
  const obj = path.join(work, `${name}.o`);
  const out = path.join(work, `${name}.elf`);
  execFileSync('gcc', [bits === 32 ? '-m32' : '-m64', '-c', path.join(work, `${name}.S`), '-o', obj]);
  execFileSync('ld', ['-m', bits === 32 ? 'elf_i386' : 'elf_x86_64', '--build-id=none', '--no-warn-rwx-segments', '-z', 'max-page-size=0x1000', '-T', path.join(work, `${name}.ld`), '-o', out, obj]);
  return out;
}

beforeAll(() => {
  if (!hasToolchain) return;
  work = mkdtempSync(path.join(tmpdir(), 'fm-multiboot-'));
  tiny32 = readFileSync(assemble('tiny32', TINY_SRC, TINY32_LD, 32));
  tiny64 = readFileSync(assemble('tiny64', TINY_SRC, TINY64_LD, 64));
  const k = assemble('kludge', KLUDGE_SRC, KLUDGE_LD, 32);
  execFileSync('objcopy', ['-O', 'binary', k, `${k}.bin`]);
  kludge = readFileSync(`${k}.bin`);
});

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

/* ---- byte patching helpers ------------------------------------------------------ */
const copy = (b: Uint8Array) => new Uint8Array(b);
function u32(b: Uint8Array, off: number): number {
  return new DataView(b.buffer, b.byteOffset).getUint32(off, true);
}
function set8(b: Uint8Array, off: number, v: number): Uint8Array {
  const c = copy(b);
  c[off] = v;
  return c;
}
function set16(b: Uint8Array, off: number, v: number): Uint8Array {
  const c = copy(b);
  new DataView(c.buffer).setUint16(off, v, true);
  return c;
}
function set32(b: Uint8Array, off: number, v: number): Uint8Array {
  const c = copy(b);
  new DataView(c.buffer).setUint32(off, v >>> 0, true);
  return c;
}
function set64(b: Uint8Array, off: number, v: bigint): Uint8Array {
  const c = copy(b);
  new DataView(c.buffer).setBigUint64(off, v, true);
  return c;
}
/** Rewrite the Multiboot header flags at hdr and fix the checksum. */
function setFlags(b: Uint8Array, hdr: number, flags: number): Uint8Array {
  return set32(set32(b, hdr + 4, flags), hdr + 8, -(0x1badb002 + flags));
}

/** Expect a MultibootError with exactly this message and these parts. */
function expectError(bytes: Uint8Array, file: string, offset: number, field: string, problem: string, ramSize?: number): void {
  let caught: unknown;
  try {
    parseMultibootImage(bytes, file, ramSize === undefined ? {} : { ramSize });
  } catch (e) {
    caught = e;
  }
  expect(caught).toBeInstanceOf(MultibootError);
  const err = caught as MultibootError;
  expect(err.message).toBe(`${file}: offset 0x${offset.toString(16)}: ${field} ${problem}`);
  expect(err.fileName).toBe(file);
  expect(err.offset).toBe(offset);
  expect(err.field).toBe(field);
}

// Layout facts of the tiny images, checked in the first tests.
const HDR = 0x1000; // Multiboot header (start of .text) at file offset 0x1000
const PH32 = 0x34; // ELF32 program headers: 0x34, 0x54
const PH64 = 0x40; // ELF64 program headers: 0x40, 0x78

describe.skipIf(!hasToolchain)('parseMultibootImage: good images', () => {
  it('tiny ELF32: header, entry, segments, bss', () => {
    const plan = parseMultibootImage(tiny32, 'tiny32.elf');
    expect(plan.format).toBe('elf32');
    expect(plan.machine).toBe('i386');
    expect(plan.fileName).toBe('tiny32.elf');
    expect(plan.header).toEqual({ offset: HDR, flags: 3, checksum: (-(0x1badb002 + 3)) >>> 0, pageAlign: true, memoryInfo: true, aoutKludge: false });
    expect(plan.entry).toBe(0x10000c);
    expect(plan.entryVirtual).toBe(0x10000cn);
    expect(u32(tiny32, 28)).toBe(PH32);
    expect(plan.segments).toHaveLength(2);
    const [text, data] = plan.segments;
    expect(text!.paddr).toBe(0x100000);
    expect(text!.programHeader).toBe(0);
    expect(text!.fileOffset).toBe(HDR);
    expect(text!.memSize).toBe(text!.fileBytes.length);
    expect(Array.from(text!.fileBytes.subarray(0, 4))).toEqual([0x02, 0xb0, 0xad, 0x1b]);
    expect(text!.flags & 1).toBe(1); // PF_X
    expect(data!.paddr).toBe(0x200000);
    expect(data!.vaddr).toBe(0x200000n);
    expect(data!.memSize).toBe(0x2004);
    expect(Array.from(data!.fileBytes)).toEqual([0x78, 0x56, 0x34, 0x12]);
    expect(plan.loadStart).toBe(0x100000);
    expect(plan.loadEnd).toBe(0x202004);
  });

  it('fileBytes are copies (also for Buffer input); materializeSegment and loadIntoRam zero-fill bss', () => {
    for (const bytes of [copy(tiny32), Buffer.from(tiny32)]) {
      const p = parseMultibootImage(bytes, 'tiny32.elf');
      bytes.fill(0xee);
      expect(p.segments[1]!.fileBytes[0]).toBe(0x78);
      expect(p.segments[1]!.fileBytes.byteOffset).toBe(0);
      expect(p.segments[1]!.fileBytes.buffer.byteLength).toBe(4);
      expect(Buffer.isBuffer(p.segments[1]!.fileBytes)).toBe(false);
    }
    const plan = parseMultibootImage(tiny32, 'tiny32.elf');
    const full = materializeSegment(plan.segments[1]!);
    expect(full.length).toBe(0x2004);
    expect(Array.from(full.subarray(0, 4))).toEqual([0x78, 0x56, 0x34, 0x12]);
    expect(full.subarray(4).every((b) => b === 0)).toBe(true);
    const ram = new Uint8Array(0x300000).fill(0xaa);
    loadIntoRam(plan, ram);
    expect(ram[0x200000]).toBe(0x78);
    expect(ram.subarray(0x200004, 0x202004).every((b) => b === 0)).toBe(true);
    expect(ram[0x202004]).toBe(0xaa);
    expect(u32(ram, 0x100000)).toBe(0x1badb002);
    expect(() => loadIntoRam(plan, new Uint8Array(0x200000))).toThrow(RangeError);
  });

  it('tiny ELF64: exact high-half vaddr, physical load address', () => {
    const plan = parseMultibootImage(tiny64, 'tiny64.elf');
    expect(plan.format).toBe('elf64');
    expect(plan.machine).toBe('x86_64');
    expect(Number(new DataView(tiny64.buffer, tiny64.byteOffset).getBigUint64(32, true))).toBe(PH64);
    expect(plan.entry).toBe(0x10000c);
    const data = plan.segments[1]!;
    expect(data.paddr).toBe(0x200000);
    expect(data.vaddr).toBe(0xffffffff80200000n); // beyond 2^53: must not go through a double
    expect(data.memSize).toBe(0x2004);
  });

  it('accepts optional flag bits 16-31 other than the kludge, and an image without section headers', () => {
    const plan = parseMultibootImage(setFlags(tiny32, HDR, 0x00020003), 'opt.elf');
    expect(plan.header.flags).toBe(0x00020003);
    // e_shoff = e_shnum = 0: elfy.parse() crashes on this (it dereferences the
    // missing section name table); the loader never needs sections.
    const noSections = set16(set16(set32(tiny32, 32, 0), 48, 0), 50, 0);
    expect(() => elfy.parse(Buffer.from(noSections))).toThrow();
    expect(parseMultibootImage(noSections, 'nosh.elf').entry).toBe(0x10000c);
  });

  it('translates a virtual e_entry through its segment (vaddr != paddr)', () => {
    // Entry in the high-half data segment of tiny64: 0xffffffff80200002 -> 0x200002
    const plan = parseMultibootImage(set64(tiny64, 24, 0xffffffff80200002n), 'hi.elf');
    expect(plan.entryVirtual).toBe(0xffffffff80200002n);
    expect(plan.entry).toBe(0x200002);
  });

  it('a.out kludge flat binary', () => {
    const plan = parseMultibootImage(kludge, 'kludge.bin');
    expect(plan.format).toBe('aout-kludge');
    expect(plan.machine).toBeNull();
    expect(plan.header.aoutKludge).toBe(true);
    const k = plan.header.kludge!;
    expect(k.headerAddr).toBe(0x100000);
    expect(k.loadAddr).toBe(0x100000);
    expect(k.loadEndAddr).toBe(0x100000 + kludge.length);
    expect(k.bssEndAddr).toBe(0x100000 + kludge.length + 0x3000);
    expect(k.entryAddr).toBe(0x100020);
    expect(plan.entry).toBe(0x100020);
    expect(plan.segments).toHaveLength(1);
    const s = plan.segments[0]!;
    expect(s.paddr).toBe(0x100000);
    expect(s.fileOffset).toBe(0);
    expect(Buffer.from(s.fileBytes).equals(Buffer.from(kludge))).toBe(true);
    expect(s.memSize).toBe(kludge.length + 0x3000);
    expect(s.programHeader).toBeNull();
  });

  it('a.out kludge with load_end_addr = 0 and bss_end_addr = 0 loads the rest of the file', () => {
    const plan = parseMultibootImage(set32(set32(kludge, 20, 0), 24, 0), 'k0.bin');
    expect(plan.segments[0]!.memSize).toBe(kludge.length);
  });

  it('a.out kludge with the header later in the file (text offset = header offset - (header_addr - load_addr))', () => {
    const padded = new Uint8Array(0x40 + kludge.length);
    padded.set(kludge, 0x40); // header now at file offset 0x40 but still describes load_addr = header_addr
    const plan = parseMultibootImage(padded, 'pad.bin');
    expect(plan.segments[0]!.fileOffset).toBe(0x40);
    // now claim the header sits 0x40 bytes into the image: the image starts at file offset 0
    const moved = set32(set32(padded, 0x40 + 12, 0x100040), 0x40 + 20, 0x100000 + padded.length);
    const plan2 = parseMultibootImage(moved, 'moved.bin');
    expect(plan2.segments[0]!.fileOffset).toBe(0);
    expect(plan2.segments[0]!.fileBytes.length).toBe(padded.length);
  });
});

describe.skipIf(!hasToolchain)('parseMultibootImage: the project guests', () => {
  let images: Record<string, string> = {};
  beforeAll(async () => {
    images = await buildGuests();
  }, 120_000);

  it('hello.elf is a native ELF32 image', () => {
    const plan = parseMultibootImage(readFileSync(images.hello!), 'hello.elf', { ramSize: 64 << 20 });
    expect(plan.format).toBe('elf32');
    expect(plan.entry).toBe(0x10000c);
    expect(plan.segments[0]!.paddr).toBe(0x100000);
  });

  it('paging: ELF64 and its objcopy ELF32 give the same physical plan; the high-half variable is at 0x110000', () => {
    const p32 = parseMultibootImage(readFileSync(images.paging!), 'paging.elf', { ramSize: 64 << 20 });
    const p64 = parseMultibootImage(readFileSync(`${images.paging!}64`), 'paging.elf64', { ramSize: 64 << 20 });
    expect(p64.format).toBe('elf64');
    expect(p32.segments.map((s) => [s.paddr, s.memSize, s.fileBytes.length])).toEqual(p64.segments.map((s) => [s.paddr, s.memSize, s.fileBytes.length]));
    expect(p32.entry).toBe(p64.entry);
    // matches the golden transcript: "high-half variable at 0xffffffff80110000 (physical 0x110000) = 0x4649524d414d454e"
    const seg = p64.segments.find((s) => s.paddr === 0x110000)!;
    expect(seg.vaddr).toBe(0xffffffff80110000n);
    expect(new DataView(seg.fileBytes.buffer).getBigUint64(0, true)).toBe(0x4649524d414d454en);
    // objcopy -O elf32-i386 truncates the VMA, the physical address survives
    expect(p32.segments.find((s) => s.paddr === 0x110000)!.vaddr).toBe(0x80110000n);
  });
});

describe.skipIf(!hasToolchain)('parseMultibootImage: malformed images', () => {
  it('not ELF and no a.out kludge', () => {
    const b = copy(tiny32);
    b.set([0x58, 0x45, 0x4c, 0x46], 0);
    expectError(b, 'guest.elf', 0, 'e_ident', 'magic [58 45 4c 46] is not ELF (7f 45 4c 46) and the multiboot header at 0x1000 does not set the a.out kludge (flags bit 16)');
  });

  it('truncated file: segment data cut off', () => {
    expectError(tiny32.slice(0, 0x1010), 'guest.elf', PH32 + 16, 'program header 0: p_filesz', `0x${u32(tiny32, PH32 + 16).toString(16)} exceeds file size 0x1010 (p_offset 0x1000)`);
  });

  it('truncated file: ELF header cut off', () => {
    const b = new Uint8Array(28);
    b.set(tiny32.subarray(0, 16));
    b.set(tiny32.subarray(HDR, HDR + 12), 16);
    expectError(b, 'guest.elf', 0, 'ELF header', 'is truncated: elf32 needs 52 bytes, the file has 28');
  });

  it('truncated file: program header table past the end', () => {
    expectError(set32(tiny32, 28, 0xfff0), 'guest.elf', 28, 'e_phoff', `0xfff0: the program header table (2 x 0x20 bytes) exceeds file size 0x${tiny32.length.toString(16)}`);
  });

  it('truncated file: p_offset beyond the end', () => {
    expectError(set32(tiny32, PH32 + 0x20 + 4, 0x100000), 'guest.elf', PH32 + 0x20 + 4, 'program header 1: p_offset', `0x100000 is beyond the end of the file (size 0x${tiny32.length.toString(16)})`);
  });

  it('bad checksum', () => {
    const good = u32(tiny32, HDR + 8);
    expectError(set32(tiny32, HDR + 8, good + 1), 'guest.elf', HDR + 8, 'multiboot header checksum', `0x${(good + 1).toString(16)} is wrong: magic + flags + checksum must be 0 mod 2^32 (expected 0x${good.toString(16)})`);
  });

  it('header not found: no magic, misaligned magic, magic past 8 KiB, empty file', () => {
    const supported = 'supported: a Multiboot v1 kernel (ELF or a.out kludge), a Linux bzImage (boot protocol 2.06 or later), or an ELF vmlinux with a PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY)';
    const problem = (n: number, size: number, what = 'not a kernel format we know') =>
      `not found: no 4-byte aligned magic 0x1badb002 with a valid checksum in the first ${n} bytes (file size 0x${size.toString(16)}); the file is ${what}; ${supported}`;
    expectError(set32(tiny32, HDR, 0), 'guest.elf', 0, 'multiboot header', problem(8192, tiny32.length, 'an ELF32 i386 executable without a Multiboot header or a PVH entry note'));
    const mis = new Uint8Array(0x100);
    mis.set(kludge.subarray(0, 32), 2);
    expectError(mis, 'mis.bin', 0, 'multiboot header', problem(0x100, 0x100));
    const far = new Uint8Array(8192 + kludge.length);
    far.set(kludge, 8192);
    expectError(far, 'far.bin', 0, 'multiboot header', problem(8192, far.length));
    const edge = new Uint8Array(8192 + 8);
    edge.set(tiny32.subarray(HDR, HDR + 12), 8188); // header would straddle the 8 KiB limit
    expectError(edge, 'edge.bin', 0, 'multiboot header', problem(8192, edge.length));
    expectError(new Uint8Array(0), 'empty.bin', 0, 'multiboot header', problem(0, 0));
  });

  it('overlapping segments', () => {
    const textEnd = 0x100000 + u32(tiny32, PH32 + 20);
    expectError(
      set32(tiny32, PH32 + 0x20 + 12, 0x100004),
      'guest.elf',
      PH32 + 0x20 + 12,
      'program header 1: p_paddr',
      `range [0x100004, 0x102008) overlaps program header 0 [0x100000, 0x${textEnd.toString(16)})`,
    );
  });

  it('segment outside RAM (given RAM size) and outside 4 GiB', () => {
    expectError(tiny32, 'guest.elf', PH32 + 0x20 + 12, 'program header 1: p_paddr', 'range [0x200000, 0x202004) is outside RAM (0x180000 bytes)', 0x180000);
    expectError(set32(tiny32, PH32 + 0x20 + 12, 0xfffff000), 'guest.elf', PH32 + 0x20 + 12, 'program header 1: p_paddr', 'range [0xfffff000, 0x100001004) exceeds the 32-bit physical address space');
    // ELF64: a physical address above 4 GiB
    expectError(set64(tiny64, PH64 + 0x38 + 24, 0x100000000n), 'guest64.elf', PH64 + 0x38 + 24, 'program header 1: p_paddr', 'range [0x100000000, 0x100002004) exceeds the 32-bit physical address space');
  });

  it('entry outside every segment', () => {
    expectError(set32(tiny32, 24, 0x300000), 'guest.elf', 24, 'e_entry', '0x300000 is outside every segment');
    expectError(set64(tiny64, 24, 0xffffffff90000000n), 'guest64.elf', 24, 'e_entry', '0xffffffff90000000 is outside every segment');
  });

  it('unsupported machine', () => {
    expectError(set16(tiny32, 18, 40), 'guest.elf', 18, 'e_machine', '40 (arm) is an unsupported machine for elf32: expected 3 (EM_386)');
    expectError(set16(tiny64, 18, 183), 'guest64.elf', 18, 'e_machine', '183 (AArch64) is an unsupported machine for elf64: expected 62 (EM_X86_64)');
    expectError(set16(tiny32, 18, 62), 'guest.elf', 18, 'e_machine', '62 (amd64) is an unsupported machine for elf32: expected 3 (EM_386)');
    expectError(set16(tiny32, 18, 0x1234), 'guest.elf', 18, 'e_machine', '4660 is an unsupported machine for elf32: expected 3 (EM_386)');
  });

  it('unsupported required header flags (video mode, unknown low bits)', () => {
    expectError(setFlags(tiny32, HDR, 0x7), 'guest.elf', HDR + 4, 'multiboot header flags', '0x7 require unsupported features: video mode (bit 2); bits 0-15 are mandatory, so the image is refused');
    expectError(setFlags(tiny32, HDR, 0x8023), 'guest.elf', HDR + 4, 'multiboot header flags', '0x8023 require unsupported features: bit 5, bit 15; bits 0-15 are mandatory, so the image is refused');
  });

  it('ELF identification and header fields', () => {
    expectError(set8(tiny32, 4, 3), 'guest.elf', 4, 'e_ident[EI_CLASS]', '3 is neither ELFCLASS32 (1) nor ELFCLASS64 (2)');
    expectError(set8(tiny32, 5, 2), 'guest.elf', 5, 'e_ident[EI_DATA]', '2 is not ELFDATA2LSB (1): only little-endian x86 images are supported');
    expectError(set8(tiny32, 6, 0), 'guest.elf', 6, 'e_ident[EI_VERSION]', '0 is not EV_CURRENT (1)');
    expectError(set16(tiny32, 16, 3), 'guest.elf', 16, 'e_type', '0x3 (dyn) is not ET_EXEC (2): only executables can be booted');
    expectError(set16(tiny32, 16, 0x77), 'guest.elf', 16, 'e_type', '0x77 is not ET_EXEC (2): only executables can be booted');
    expectError(set32(tiny32, 20, 2), 'guest.elf', 20, 'e_version', '0x2 is not EV_CURRENT (1)');
    expectError(set16(tiny32, 40, 0x10), 'guest.elf', 40, 'e_ehsize', `0x10 is invalid: must be at least 0x34 and within the file (size 0x${tiny32.length.toString(16)})`);
    expectError(set16(tiny32, 42, 0x28), 'guest.elf', 42, 'e_phentsize', '0x28 is not the elf32 program header size 0x20');
    expectError(set16(tiny32, 44, 0), 'guest.elf', 44, 'e_phnum', 'is 0: the image has no program headers');
    expectError(set32(tiny32, 28, 0), 'guest.elf', 28, 'e_phoff', 'is 0: the image has no program headers');
    expectError(set16(tiny32, 44, 0xffff), 'guest.elf', 44, 'e_phnum', '0xffff (PN_XNUM, extended numbering) is not supported');
    expectError(set16(tiny64, 54, 0x20), 'guest64.elf', 54, 'e_phentsize', '0x20 is not the elf64 program header size 0x38');
  });

  it('program header fields', () => {
    expectError(set32(tiny32, PH32 + 0x20 + 16, 0x3000), 'guest.elf', PH32 + 0x20 + 16, 'program header 1: p_filesz', '0x3000 exceeds p_memsz 0x2004');
    expectError(set32(tiny32, PH32 + 0x20, 3), 'guest.elf', PH32 + 0x20, 'program header 1: p_type', 'PT_INTERP: dynamically linked images are not supported');
    expectError(set32(tiny32, PH32, 2), 'guest.elf', PH32, 'program header 0: p_type', 'PT_DYNAMIC: dynamically linked images are not supported');
    expectError(set32(tiny32, PH32 + 28, 0x1800), 'guest.elf', PH32 + 28, 'program header 0: p_align', '0x1800 is not a power of two');
    // ELF64 p_filesz far beyond 2^53 (elfy would round it)
    expectError(set64(tiny64, PH64 + 32, 0x20000000000001n), 'guest64.elf', PH64 + 32, 'program header 0: p_filesz', `0x20000000000001 exceeds p_memsz 0x${u32(tiny64, PH64 + 40).toString(16)}`);
  });

  it('no loadable segment', () => {
    const noLoad = set32(set32(tiny32, PH32, 4), PH32 + 0x20, 4); // both PT_NOTE
    expectError(noLoad, 'guest.elf', 44, 'e_phnum', '2 program header(s) but no PT_LOAD segment: nothing to load');
    const empty = set32(set32(set32(set32(tiny32, PH32 + 16, 0), PH32 + 20, 0), PH32 + 0x20 + 16, 0), PH32 + 0x20 + 20, 0);
    expectError(empty, 'guest.elf', 44, 'e_phnum', '2 program header(s) but every PT_LOAD segment is empty: nothing to load');
  });

  it('a.out kludge fields', () => {
    const f = 'k.bin';
    expectError(set32(kludge, 16, 0x100010), f, 16, 'multiboot header load_addr', '0x100010 is above header_addr 0x100000');
    expectError(set32(kludge, 16, 0xff000), f, 12, 'multiboot header header_addr', "0x100000 - load_addr 0xff000 = 0x1000 exceeds the header's file offset 0x0");
    expectError(set32(kludge, 20, 0xfff00), f, 20, 'multiboot header load_end_addr', '0xfff00 is below load_addr 0x100000');
    expectError(set32(kludge, 20, 0x100000 + kludge.length + 1), f, 20, 'multiboot header load_end_addr', `0x${(0x100000 + kludge.length + 1).toString(16)} needs 0x${(kludge.length + 1).toString(16)} bytes from file offset 0x0 but the file size is 0x${kludge.length.toString(16)}`);
    expectError(set32(kludge, 24, 0x100001), f, 24, 'multiboot header bss_end_addr', `0x100001 is below the end of the loaded data 0x${(0x100000 + kludge.length).toString(16)}`);
    const end = 0x100000 + kludge.length + 0x3000;
    expectError(set32(kludge, 28, end), f, 28, 'multiboot header entry_addr', `0x${end.toString(16)} is outside every segment: the image occupies [0x100000, 0x${end.toString(16)})`);
    expectError(set32(kludge, 28, 0xfffff), f, 28, 'multiboot header entry_addr', `0xfffff is outside every segment: the image occupies [0x100000, 0x${end.toString(16)})`);
    expectError(kludge, f, 16, 'multiboot header load_addr', `range [0x100000, 0x${end.toString(16)}) is outside RAM (0x100000 bytes)`, 0x100000);
    expectError(kludge.slice(0, 24), f, 12, 'multiboot header a.out kludge fields', 'are truncated: flags bit 16 needs 32 header bytes from 0x0 but the file ends at 0x18');
    const empty = set32(set32(kludge, 20, 0x100000), 24, 0);
    expectError(empty, f, 16, 'multiboot header load_addr', '0x100000: the a.out kludge image is empty');
  });

  it('programmer errors are not MultibootErrors', () => {
    expect(() => parseMultibootImage(tiny32, 'x', { ramSize: -1 })).toThrow(RangeError);
    expect(() => parseMultibootImage([1, 2, 3] as unknown as Uint8Array, 'x')).toThrow(TypeError);
  });

  it('never throws anything but MultibootError: every truncation, 3000 random byte mutations', () => {
    const images: Array<[string, Uint8Array]> = [
      ['tiny32.elf', tiny32],
      ['tiny64.elf', tiny64],
      ['kludge.bin', kludge],
    ];
    const check = (b: Uint8Array, name: string) => {
      try {
        const plan: MultibootLoadPlan = parseMultibootImage(b, name, { ramSize: 64 << 20 });
        // whatever is accepted must be self-consistent
        for (const s of plan.segments) {
          expect(s.fileBytes.length).toBeLessThanOrEqual(s.memSize);
          expect(s.paddr + s.memSize).toBeLessThanOrEqual(64 << 20);
        }
        expect(plan.segments.some((s) => plan.entry >= s.paddr && plan.entry < s.paddr + s.memSize)).toBe(true);
      } catch (e) {
        if (!(e instanceof MultibootError)) throw new Error(`${name}: non-MultibootError ${String(e)}`);
        expect(e.message.startsWith(`${name}: offset 0x`)).toBe(true);
      }
    };
    for (const [name, img] of images) for (let n = 0; n <= img.length; n += n < 0x1100 ? 1 : 64) check(img.slice(0, n), name);
    let seed = 0x12345678;
    const rnd = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0), seed);
    for (let i = 0; i < 3000; i++) {
      const [name, img] = images[i % images.length]!;
      const b = copy(img);
      // mutate header areas (ELF header + program headers, and the Multiboot header)
      const hot = name === 'kludge.bin' ? 32 : rnd() % 2 ? 0x100 : HDR + 12;
      const start = name === 'kludge.bin' || hot === 0x100 ? 0 : HDR;
      for (let k = 0; k < 1 + (rnd() % 3); k++) b[start + (rnd() % (hot - start))] = rnd() & 0xff;
      check(b, name);
    }
  }, 60_000);
});
