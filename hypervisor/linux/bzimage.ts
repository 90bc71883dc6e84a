/**
 * The Linux/x86 boot protocol (Documentation/arch/x86/boot.rst) for a bzImage,
 * entered at its 32-bit entry the way a boot loader that skips the real-mode
 * setup does: the protected-mode kernel at 0x100000 (code32_start), a zero
 * page (struct boot_params) holding a copy of the setup header, the e820 map,
 * cmd_line_ptr and the initrd, ESI pointing at it, CS 0x10 / DS 0x18 flat.
 */
import { LinuxImageError, LinuxLoadError } from './errors.js';
import { bzImageProtocol } from './kernel-format.js';
import { CMDLINE_ADDR, CMDLINE_MAX, cmdlineBytes, e820Bytes, placeHigh, type LinuxBootOptions, type LinuxBootPlan } from './boot-plan.js';

/** Setup header fields (offsets in the file and in boot_params alike). */
export const HDR = {
  setupSects: 0x1f1,
  vidMode: 0x1fa,
  jump: 0x200,
  header: 0x202,
  version: 0x206,
  typeOfLoader: 0x210,
  loadflags: 0x211,
  code32Start: 0x214,
  ramdiskImage: 0x218,
  ramdiskSize: 0x21c,
  heapEndPtr: 0x224,
  cmdLinePtr: 0x228,
  initrdAddrMax: 0x22c,
  kernelAlignment: 0x230,
  relocatableKernel: 0x234,
  xloadflags: 0x236,
  cmdlineSize: 0x238,
  prefAddress: 0x258,
  initSize: 0x260,
} as const;

/** boot_params fields outside the setup header. */
export const BP = { extRamdiskImage: 0xc0, extRamdiskSize: 0xc4, extCmdLinePtr: 0xc8, e820Entries: 0x1e8, sentinel: 0x1ef, e820Table: 0x2d0 } as const;
export const E820_MAX_ENTRIES_ZEROPAGE = 128;
export const ZERO_PAGE_ADDR = 0x10000;
const KERNEL_ADDR = 0x100000;
const LOADED_HIGH = 1 << 0;
const CAN_USE_HEAP = 1 << 7;
/** type_of_loader 0xff: "undefined" boot loader (QEMU writes 0xb0, its own id; we are not QEMU). */
const LOADER_UNDEFINED = 0xff;

const hex = (n: number): string => `0x${n.toString(16)}`;

export interface BzImageInfo {
  protocol: number;
  setupBytes: number;
  kernel: Uint8Array;
  initrdAddrMax: number;
  cmdlineSize: number;
  /** Where a relocatable kernel decompresses (pref_address), and the bytes it needs there (init_size). */
  prefAddress: number;
  initSize: number;
  relocatable: boolean;
}

export function parseBzImage(b: Uint8Array, fileName: string): BzImageInfo {
  const protocol = bzImageProtocol(b);
  if (protocol === null) throw new LinuxImageError(fileName, HDR.header, 'setup header', 'not found: no boot flag 0xaa55 at 0x1fe and "HdrS" at 0x202');
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  if (protocol < 0x206) throw new LinuxImageError(fileName, HDR.version, 'setup header version', `${hex(protocol)} is older than 2.06 (needed for cmdline_size and a 32-bit entry without the real-mode setup)`);
  if ((b[HDR.loadflags]! & LOADED_HIGH) === 0) throw new LinuxImageError(fileName, HDR.loadflags, 'loadflags', 'lacks LOADED_HIGH: a zImage that loads at 0x10000 is not supported (only bzImage)');
  const sects = b[HDR.setupSects]! || 4;
  const setupBytes = (sects + 1) * 512;
  if (setupBytes >= b.length) throw new LinuxImageError(fileName, HDR.setupSects, 'setup_sects', `${sects} puts the protected-mode kernel at ${hex(setupBytes)}, past the end of the file (${b.length} bytes)`);
  const headerEnd = 0x202 + b[0x201]!;
  const has = (off: number, size: number): boolean => off + size <= headerEnd;
  return {
    protocol,
    setupBytes,
    kernel: b.subarray(setupBytes),
    initrdAddrMax: dv.getUint32(HDR.initrdAddrMax, true) || 0x37ffffff,
    cmdlineSize: has(HDR.cmdlineSize, 4) ? dv.getUint32(HDR.cmdlineSize, true) : 255,
    prefAddress: protocol >= 0x20a && has(HDR.prefAddress, 8) ? Number(dv.getBigUint64(HDR.prefAddress, true)) : KERNEL_ADDR,
    initSize: protocol >= 0x20a && has(HDR.initSize, 4) ? dv.getUint32(HDR.initSize, true) : b.length - setupBytes,
    relocatable: protocol >= 0x205 && b[HDR.relocatableKernel] !== 0,
  };
}

export function planBzImage(image: Uint8Array, fileName: string, opts: LinuxBootOptions): LinuxBootPlan {
  const k = parseBzImage(image, fileName);
  if ((opts.modules ?? []).length > 0) throw new LinuxLoadError(`${fileName}: a bzImage takes one initrd (--initrd), not Multiboot/PVH modules (--module)`);
  // The kernel decompresses to pref_address (or in place above it) and needs init_size bytes there.
  const kernelEnd = Math.max(KERNEL_ADDR + k.kernel.length, k.prefAddress + k.initSize);
  if (kernelEnd > opts.ramBytes) {
    throw new LinuxLoadError(`${fileName}: the kernel needs RAM up to ${hex(kernelEnd)} (pref_address ${hex(k.prefAddress)} + init_size ${hex(k.initSize)}); the VM has ${hex(opts.ramBytes)} bytes: give it more with --mem`);
  }
  const zp = new Uint8Array(0x1000);
  const zdv = new DataView(zp.buffer);
  // The setup header, as the kernel expects to find it in boot_params.
  const headerEnd = Math.min(0x202 + image[0x201]!, k.setupBytes, 0x1000);
  zp.set(image.subarray(HDR.setupSects, headerEnd), HDR.setupSects);
  zp[HDR.typeOfLoader] = LOADER_UNDEFINED;
  zp[HDR.loadflags] = (zp[HDR.loadflags]! | CAN_USE_HEAP) & 0xff;
  zdv.setUint16(HDR.heapEndPtr, 0xfe00 - 0x200, true);
  zdv.setUint32(HDR.code32Start, KERNEL_ADDR, true);
  const cmdline = cmdlineBytes(opts.cmdline, Math.min(k.cmdlineSize + 1, CMDLINE_MAX), `the kernel's cmdline_size (${k.cmdlineSize})`);
  zdv.setUint32(HDR.cmdLinePtr, CMDLINE_ADDR, true);
  const writes = [
    { gpa: KERNEL_ADDR, bytes: k.kernel, what: 'protected-mode kernel' },
    { gpa: CMDLINE_ADDR, bytes: cmdline, what: 'command line' },
  ];
  let initrdNote = '';
  if (opts.initrd) {
    const [addr] = placeHigh([opts.initrd], opts.ramBytes, k.initrdAddrMax, kernelEnd, 'initrd');
    zdv.setUint32(HDR.ramdiskImage, addr!, true);
    zdv.setUint32(HDR.ramdiskSize, opts.initrd.bytes.length, true);
    writes.push({ gpa: addr!, bytes: opts.initrd.bytes, what: 'initrd' });
    initrdNote = `, initrd ${opts.initrd.bytes.length} bytes at ${hex(addr!)}`;
  }
  const map = opts.memoryMap.slice(0, E820_MAX_ENTRIES_ZEROPAGE);
  zp[BP.e820Entries] = map.length;
  zp.set(e820Bytes(map, 20), BP.e820Table);
  writes.push({ gpa: ZERO_PAGE_ADDR, bytes: zp, what: 'boot_params' });
  const v = `${k.protocol >> 8}.${(k.protocol & 0xff).toString().padStart(2, '0')}`;
  return {
    format: 'bzimage',
    writes,
    entry: KERNEL_ADDR,
    ebx: 0,
    esi: ZERO_PAGE_ADDR,
    summary: `bzImage (boot protocol ${v}), ${k.kernel.length} bytes at ${hex(KERNEL_ADDR)}, 32-bit entry${initrdNote}`,
  };
}
