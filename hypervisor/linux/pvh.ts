/**
 * PVH boot (xen/include/public/arch-x86/hvm/start_info.h; what QEMU's -kernel
 * does for an ELF vmlinux with a XEN_ELFNOTE_PHYS32_ENTRY note): the ELF's
 * PT_LOAD segments at their physical addresses, an hvm_start_info (version 1:
 * with the memory map) whose address is in EBX, the command line and the
 * modules (the initrd first, as Linux takes modules[0] as its initrd), entry
 * in 32-bit flat protected mode with paging off.
 */
import { LinuxImageError, LinuxLoadError } from './errors.js';
import { pvhEntry } from './kernel-format.js';
import { RSDP_ADDR } from '../acpi/tables.js';
import { CMDLINE_ADDR, CMDLINE_MAX, cmdlineBytes, e820Bytes, placeHigh, type BootFile, type BootWrite, type LinuxBootOptions, type LinuxBootPlan } from './boot-plan.js';

export const HVM_START_MAGIC = 0x336ec578;
export const START_INFO_ADDR = 0x6000;
/** struct hvm_start_info (version 1) */
export const SI = { magic: 0, version: 4, flags: 8, nrModules: 12, modlistPaddr: 16, cmdlinePaddr: 24, rsdpPaddr: 32, memmapPaddr: 40, memmapEntries: 48, size: 56 } as const;
/** struct hvm_modlist_entry: paddr, size, cmdline_paddr, reserved (u64 each). */
const MODLIST_ENTRY = 32;
/** struct hvm_memmap_table_entry: addr, size (u64), type, reserved (u32). */
const MEMMAP_ENTRY = 24;
/** The start_info page ends here (the stack of nothing; real-mode IVT/BDA are below 0x600). */
const START_INFO_END = 0x9000;

const hex = (n: number): string => `0x${n.toString(16)}`;

interface Segment {
  paddr: number;
  fileBytes: Uint8Array;
  memSize: number;
  index: number;
}

function loadSegments(b: Uint8Array, fileName: string, ramBytes: number): Segment[] {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const is64 = b[4] === 2;
  const num = (o: number): number => (is64 ? Number(dv.getBigUint64(o, true)) : dv.getUint32(o, true));
  const phoff = num(is64 ? 0x20 : 0x1c);
  const phentsize = dv.getUint16(is64 ? 0x36 : 0x2a, true);
  const phnum = dv.getUint16(is64 ? 0x38 : 0x2c, true);
  const segs: Segment[] = [];
  for (let i = 0; i < phnum; i++) {
    const ph = phoff + i * phentsize;
    if (dv.getUint32(ph, true) !== 1) continue; // PT_LOAD
    const off = num(ph + (is64 ? 8 : 4));
    const paddr = num(ph + (is64 ? 24 : 12));
    const filesz = num(ph + (is64 ? 32 : 16));
    const memsz = num(ph + (is64 ? 40 : 20));
    const field = `program header ${i}`;
    if (off + filesz > b.length) throw new LinuxImageError(fileName, ph, `${field}: p_filesz`, `${hex(filesz)} at p_offset ${hex(off)} runs past the end of the file (${hex(b.length)} bytes)`);
    if (memsz < filesz) throw new LinuxImageError(fileName, ph, `${field}: p_memsz`, `${hex(memsz)} is below p_filesz ${hex(filesz)}`);
    if (memsz === 0) continue;
    if (paddr < 0x100000 || paddr + memsz > ramBytes) throw new LinuxImageError(fileName, ph, `${field}: p_paddr`, `range [${hex(paddr)}, ${hex(paddr + memsz)}) is outside guest RAM from 1 MiB to ${hex(ramBytes)} (give the VM more with --mem)`);
    segs.push({ paddr, fileBytes: b.subarray(off, off + filesz), memSize: memsz, index: i });
  }
  if (segs.length === 0) throw new LinuxImageError(fileName, phoff, 'program headers', 'have no PT_LOAD segment');
  return segs;
}

export function planPvh(image: Uint8Array, fileName: string, opts: LinuxBootOptions): LinuxBootPlan {
  const entry = pvhEntry(image, fileName);
  if (entry === null) throw new LinuxImageError(fileName, 0, 'XEN_ELFNOTE_PHYS32_ENTRY', 'not found: not an ELF with a PVH entry note');
  const segs = loadSegments(image, fileName, opts.ramBytes);
  if (!segs.some((s) => entry >= s.paddr && entry < s.paddr + s.memSize)) throw new LinuxImageError(fileName, 0, 'XEN_ELFNOTE_PHYS32_ENTRY', `${hex(entry)} is outside every PT_LOAD segment`);
  const writes: BootWrite[] = segs.map((s) => {
    const bytes = new Uint8Array(s.memSize);
    bytes.set(s.fileBytes);
    return { gpa: s.paddr, bytes, what: `program header ${s.index}` };
  });
  const kernelEnd = Math.max(...segs.map((s) => s.paddr + s.memSize));
  const modules: BootFile[] = [...(opts.initrd ? [opts.initrd] : []), ...(opts.modules ?? [])];
  const addrs = placeHigh(modules, opts.ramBytes, 0xffffffff, Math.ceil(kernelEnd / 0x1000) * 0x1000, 'module');
  // Command lines: the kernel's, then each module's, packed from CMDLINE_ADDR.
  let at = CMDLINE_ADDR;
  const kernelCmdline = cmdlineBytes(opts.cmdline, CMDLINE_MAX, 'the command line area');
  writes.push({ gpa: at, bytes: kernelCmdline, what: 'command line' });
  const cmdlineAt = at;
  at += kernelCmdline.length;
  const modCmdlines = modules.map((m) => {
    if (m.cmdline === undefined) return 0;
    const s = cmdlineBytes(m.cmdline, CMDLINE_ADDR + CMDLINE_MAX - at, 'the command line area');
    writes.push({ gpa: at, bytes: s, what: `${m.name} command line` });
    at += s.length;
    return at - s.length;
  });
  const modlistAt = START_INFO_ADDR + SI.size + 8;
  const memmapAt = modlistAt + modules.length * MODLIST_ENTRY;
  const end = memmapAt + opts.memoryMap.length * MEMMAP_ENTRY;
  if (end > START_INFO_END) throw new LinuxLoadError(`${fileName}: ${modules.length} modules and ${opts.memoryMap.length} memory map entries do not fit in the start_info area [${hex(START_INFO_ADDR)}, ${hex(START_INFO_END)})`);
  const si = new Uint8Array(end - START_INFO_ADDR);
  const dv = new DataView(si.buffer);
  dv.setUint32(SI.magic, HVM_START_MAGIC, true);
  dv.setUint32(SI.version, 1, true);
  dv.setUint32(SI.nrModules, modules.length, true);
  dv.setBigUint64(SI.modlistPaddr, modules.length > 0 ? BigInt(modlistAt) : 0n, true);
  dv.setBigUint64(SI.cmdlinePaddr, BigInt(cmdlineAt), true);
  // Every VM has ACPI tables (hypervisor/acpi/); QEMU passes the RSDP the same way.
  dv.setBigUint64(SI.rsdpPaddr, BigInt(RSDP_ADDR), true);
  dv.setBigUint64(SI.memmapPaddr, BigInt(memmapAt), true);
  dv.setUint32(SI.memmapEntries, opts.memoryMap.length, true);
  modules.forEach((m, i) => {
    const o = modlistAt - START_INFO_ADDR + i * MODLIST_ENTRY;
    dv.setBigUint64(o, BigInt(addrs[i]!), true);
    dv.setBigUint64(o + 8, BigInt(m.bytes.length), true);
    dv.setBigUint64(o + 16, BigInt(modCmdlines[i]!), true);
    writes.push({ gpa: addrs[i]!, bytes: m.bytes, what: m.name });
  });
  si.set(e820Bytes(opts.memoryMap, MEMMAP_ENTRY), memmapAt - START_INFO_ADDR);
  writes.push({ gpa: START_INFO_ADDR, bytes: si, what: 'hvm_start_info' });
  return {
    format: 'pvh',
    writes,
    entry,
    ebx: START_INFO_ADDR,
    esi: 0,
    summary: `PVH ELF, entry ${hex(entry)}, ${segs.length} segments, ${modules.length} module(s)`,
  };
}
