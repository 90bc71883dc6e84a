/**
 * What a Linux loader hands the hypervisor: bytes to write into guest RAM and
 * the 32-bit flat protected-mode entry state (CS 0x10 / DS 0x18, paging and
 * interrupts off), which is what both the bzImage 32-bit boot protocol and
 * PVH ask for. Placement follows QEMU's -kernel loader where it is visible:
 * boot_params (the zero page) at 0x10000... is QEMU's real-mode address; we
 * use 0x7000 below it for the 32-bit entry, the command line at 0x20000, the
 * initrd as high as initrd_addr_max and RAM allow, page-aligned.
 */
import type { MemoryMapEntry } from '../multiboot/info.js';
import { LinuxLoadError } from './errors.js';

export interface BootFile {
  /** For messages. */
  name: string;
  bytes: Uint8Array;
  /** Module command line (PVH module list / Multiboot module string). */
  cmdline?: string;
}

export interface LinuxBootOptions {
  cmdline: string;
  initrd?: BootFile;
  /** Further modules (PVH only; the bzImage protocol has one initrd). */
  modules?: readonly BootFile[];
  ramBytes: number;
  memoryMap: readonly MemoryMapEntry[];
}

export interface BootWrite {
  gpa: number;
  bytes: Uint8Array;
  what: string;
}

export interface LinuxBootPlan {
  format: 'bzimage' | 'pvh';
  writes: BootWrite[];
  entry: number;
  /** General registers at entry (the rest are 0). */
  ebx: number;
  esi: number;
  /** One line for the machine log. */
  summary: string;
}

export const PAGE = 0x1000;
export const CMDLINE_ADDR = 0x20000;
/** QEMU's limit for the command line area (boot protocol cmdline_size caps it further). */
export const CMDLINE_MAX = 0x10000;
/** Top of RAM the loader leaves alone: the "SeaBIOS high tables" QEMU reserves in its e820 (qemuPcMemoryMap). */
export const HIGH_TABLES_BYTES = 0x20000;

const hex = (n: number): string => `0x${n.toString(16)}`;

/** NUL-terminated command line bytes, refused if longer than `max` (with the NUL). */
export function cmdlineBytes(cmdline: string, max: number, limitName: string): Uint8Array {
  const s = new TextEncoder().encode(cmdline);
  if (s.length + 1 > max) throw new LinuxLoadError(`the command line is ${s.length} bytes; ${limitName} allows ${max - 1}`);
  const out = new Uint8Array(s.length + 1);
  out.set(s);
  return out;
}

/**
 * Places `files` top-down below min(limit, RAM top - high tables), page-aligned,
 * above `floor`. Returns their addresses in order, or a clear error.
 */
export function placeHigh(files: readonly BootFile[], ramBytes: number, limit: number, floor: number, what: string): number[] {
  let top = Math.min(limit + 1, ramBytes - HIGH_TABLES_BYTES);
  const out: number[] = [];
  for (const f of files) {
    const addr = Math.floor((top - f.bytes.length) / PAGE) * PAGE;
    if (addr < floor) {
      throw new LinuxLoadError(`${f.name}: ${what} of ${f.bytes.length} bytes does not fit in guest RAM between ${hex(floor)} and ${hex(top)} (RAM ${hex(ramBytes)} bytes; give the VM more with --mem)`);
    }
    out.push(addr);
    top = addr;
  }
  return out;
}

/** e820 entries as the kernel reads them: u64 addr, u64 size, u32 type (20 bytes each). */
export function e820Bytes(map: readonly MemoryMapEntry[], stride: 20 | 24): Uint8Array {
  const out = new Uint8Array(map.length * stride);
  const dv = new DataView(out.buffer);
  map.forEach((e, i) => {
    dv.setBigUint64(i * stride, BigInt(e.base), true);
    dv.setBigUint64(i * stride + 8, BigInt(e.length), true);
    dv.setUint32(i * stride + 16, e.type, true);
  });
  return out;
}
