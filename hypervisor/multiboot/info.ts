/**
 * Multiboot v1 information structure (the MBI whose address is in EBX at
 * guest entry), built the way QEMU's Multiboot loader builds it:
 *   - flags 0x24f: mem_lower/mem_upper (0x1), boot_device (0x2), cmdline (0x4),
 *     mods (0x8, count may be 0), mmap (0x40), boot_loader_name (0x200);
 *   - boot_device 0x8000ffff;
 *   - mmap entries of 20 bytes, each preceded by its 'size' field (20);
 *   - mem_lower from the usable entry at address 0 (639 KiB with SeaBIOS'
 *     map), mem_upper = KiB of contiguous usable RAM from 1 MiB, computed from
 *     the map exactly like QEMU's multiboot option ROM (64384 for -m 64: the
 *     top 128 KiB of RAM are reserved by SeaBIOS);
 *   - the 88-byte MBI (QEMU fills nothing past vbe_interface_len; the
 *     framebuffer fields of later spec versions are absent).
 * Everything (MBI, mmap, module list, strings) is placed in one region the
 * caller chooses.
 */
import { MultibootInfoError } from './errors.js';

const hex = (n: number | bigint): string => `0x${n.toString(16)}`;

export const MBI_SIZE = 88;
export const MBI_FLAG_MEMORY = 1 << 0;
export const MBI_FLAG_BOOT_DEVICE = 1 << 1;
export const MBI_FLAG_CMDLINE = 1 << 2;
export const MBI_FLAG_MODS = 1 << 3;
export const MBI_FLAG_MMAP = 1 << 6;
export const MBI_FLAG_BOOT_LOADER_NAME = 1 << 9;
/** The flags QEMU 7.2 sets (and buildMultibootInfo sets). */
export const QEMU_MBI_FLAGS =
  MBI_FLAG_MEMORY | MBI_FLAG_BOOT_DEVICE | MBI_FLAG_CMDLINE | MBI_FLAG_MODS | MBI_FLAG_MMAP | MBI_FLAG_BOOT_LOADER_NAME; // 0x24f
/** QEMU's boot_device: BIOS drive 0x80, no partition. */
export const QEMU_BOOT_DEVICE = 0x8000ffff;
/** Value of each mmap entry's size field (bytes after the field). */
export const MMAP_ENTRY_SIZE = 20;
/** Where QEMU's MBI sits after the memory map (ADDR_MBI - ADDR_E820_MAP): EBX = 0x9500. */
export const QEMU_MBI_OFFSET = 0x500;
/** A free low-memory region for the MBI (QEMU itself puts the mmap at 0x9000 and the MBI at 0x9500). */
export const DEFAULT_MBI_REGION = Object.freeze({ base: 0x9000, size: 0x7000 });

/** MBI field offsets. */
export const MBI_OFFSETS = Object.freeze({
  flags: 0,
  memLower: 4,
  memUpper: 8,
  bootDevice: 12,
  cmdline: 16,
  modsCount: 20,
  modsAddr: 24,
  syms: 28, // 16 bytes
  mmapLength: 44,
  mmapAddr: 48,
  drivesLength: 52,
  drivesAddr: 56,
  configTable: 60,
  bootLoaderName: 64,
  apmTable: 68,
  vbeControlInfo: 72,
  vbeModeInfo: 76,
  vbeMode: 80,
  vbeInterfaceSeg: 82,
  vbeInterfaceOff: 84,
  vbeInterfaceLen: 86,
});

export const E820_USABLE = 1;
export const E820_RESERVED = 2;

export interface MemoryMapEntry {
  base: number | bigint;
  length: number | bigint;
  /** 1 usable, 2 reserved, 3 ACPI reclaimable, 4 ACPI NVS, 5 bad. */
  type: number;
}

export interface MultibootModuleSpec {
  /** Guest-physical start of the module's bytes (the caller loads them). */
  start: number;
  /** One past the module's last byte. */
  end: number;
  cmdline?: string;
}

export interface BuildMultibootInfoOptions {
  memoryMap: readonly MemoryMapEntry[];
  /** The kernel command line. QEMU passes "<kernel file name> <-append text>". */
  cmdline: string;
  bootLoaderName: string;
  modules?: readonly MultibootModuleSpec[];
  /** Guest-physical region that receives the MBI, mmap, module list and strings. */
  placeAt: { base: number; size: number };
  /** Defaults to QEMU_BOOT_DEVICE. */
  bootDevice?: number;
}

export interface MultibootInfo {
  /** Guest-physical address of the MBI: the value for EBX. */
  address: number;
  /** Guest-physical address where `bytes` go (= placeAt.base). */
  base: number;
  /** Everything to write at `base`: MBI, mmap, module list, strings. */
  bytes: Uint8Array;
  flags: number;
  memLower: number;
  memUpper: number;
  bootDevice: number;
  mmapAddress: number;
  /** mmap_length: bytes of all entries including their size fields. */
  mmapLength: number;
  mmapEntryCount: number;
  modsAddress: number;
  modsCount: number;
  cmdlineAddress: number;
  moduleCmdlineAddresses: number[];
  bootLoaderNameAddress: number;
}

const TWO64 = 1n << 64n;
const FOUR_GIB = 0x1_0000_0000;

function toBig(v: number | bigint, what: string): bigint {
  if (typeof v === 'bigint') return v;
  if (!Number.isSafeInteger(v)) throw new MultibootInfoError(`buildMultibootInfo: ${what} ${v} is not an exact integer`);
  return BigInt(v);
}

function cString(s: string, what: string): Uint8Array {
  if (s.includes('\0')) throw new MultibootInfoError(`buildMultibootInfo: ${what} contains a NUL character`);
  const enc = new TextEncoder().encode(s);
  const out = new Uint8Array(enc.length + 1);
  out.set(enc);
  return out;
}

const isU32 = (n: number): boolean => Number.isInteger(n) && n >= 0 && n < FOUR_GIB;

/** mem_lower: KiB of usable RAM from address 0, capped at 640 KiB. */
export function computeMemLower(map: readonly MemoryMapEntry[]): number {
  for (const e of map) {
    const base = toBig(e.base, 'memory map base');
    const len = toBig(e.length, 'memory map length');
    if (e.type === E820_USABLE && base === 0n) {
      const end = len < 0xa0000n ? len : 0xa0000n;
      return Number(end >> 10n);
    }
  }
  return 0;
}

/**
 * mem_upper: KiB of contiguous usable RAM starting at 1 MiB. Same algorithm
 * as QEMU's multiboot option ROM: repeatedly extend the end through any
 * usable entry below 4 GiB with base <= end < base + length.
 */
export function computeMemUpper(map: readonly MemoryMapEntry[]): number {
  let end = 0x100000n;
  for (let progress = true; progress; ) {
    progress = false;
    for (const e of map) {
      if (e.type !== E820_USABLE) continue;
      const base = toBig(e.base, 'memory map base');
      const top = base + toBig(e.length, 'memory map length');
      if (base >= BigInt(FOUR_GIB)) continue;
      if (base <= end && end < top) {
        end = top > BigInt(FOUR_GIB) ? BigInt(FOUR_GIB) : top;
        progress = end < BigInt(FOUR_GIB);
        break;
      }
    }
  }
  return Number((end - 0x100000n) >> 10n);
}

/** Build the Multiboot information for a guest. */
export function buildMultibootInfo(options: BuildMultibootInfoOptions): MultibootInfo {
  const { memoryMap, cmdline, bootLoaderName } = options;
  const modules = options.modules ?? [];
  const { base, size } = options.placeAt;
  const bootDevice = options.bootDevice ?? QEMU_BOOT_DEVICE;

  if (!isU32(base) || base % 8 !== 0) throw new MultibootInfoError(`buildMultibootInfo: placeAt.base ${hex(base)} must be an 8-byte aligned 32-bit address`);
  if (!Number.isInteger(size) || size <= 0 || base + size > FOUR_GIB) {
    throw new MultibootInfoError(`buildMultibootInfo: placeAt region [${hex(base)}, +${hex(size)}) must be non-empty and below 4 GiB`);
  }
  if (!isU32(bootDevice)) throw new MultibootInfoError(`buildMultibootInfo: bootDevice ${bootDevice} is not a 32-bit value`);
  if (memoryMap.length === 0) throw new MultibootInfoError('buildMultibootInfo: memoryMap is empty');
  memoryMap.forEach((e, i) => {
    const b = toBig(e.base, `memoryMap[${i}].base`);
    const l = toBig(e.length, `memoryMap[${i}].length`);
    if (b < 0n || l <= 0n || b + l > TWO64) throw new MultibootInfoError(`buildMultibootInfo: memoryMap[${i}] [${hex(b)}, +${hex(l)}) is not a valid 64-bit range`);
    if (!isU32(e.type)) throw new MultibootInfoError(`buildMultibootInfo: memoryMap[${i}].type ${e.type} is not a 32-bit value`);
  });
  modules.forEach((m, i) => {
    if (!isU32(m.start) || !isU32(m.end) || m.end < m.start) {
      throw new MultibootInfoError(`buildMultibootInfo: modules[${i}] [${hex(m.start)}, ${hex(m.end)}) is not a valid 32-bit range`);
    }
  });

  // Layout as QEMU's (hw/i386/multiboot.c): the memory map at the region's start (ADDR_E820_MAP,
  // 0x9000), the MBI 0x500 after it (ADDR_MBI, 0x9500: EBX), then module list and strings.
  // A map longer than QEMU's 0x500 bytes pushes the MBI up rather than being cut short.
  // [mmap n*24][pad][MBI 88][mods m*16][cmdline\0][module cmdlines\0...][loader name\0]
  const align8 = (n: number) => (n + 7) & ~7;
  const mmapOff = 0;
  const mmapLength = memoryMap.length * (4 + MMAP_ENTRY_SIZE);
  const mbiOff = Math.max(QEMU_MBI_OFFSET, align8(mmapLength));
  const modsOff = align8(mbiOff + MBI_SIZE);
  const cmdlineBytes = cString(cmdline, 'cmdline');
  const modCmdlines = modules.map((m, i) => cString(m.cmdline ?? '', `modules[${i}].cmdline`));
  const loaderBytes = cString(bootLoaderName, 'bootLoaderName');
  const cmdlineOff = modsOff + modules.length * 16;
  const modCmdlineOffs: number[] = [];
  let off = cmdlineOff + cmdlineBytes.length;
  for (const c of modCmdlines) {
    modCmdlineOffs.push(off);
    off += c.length;
  }
  const loaderOff = off;
  const total = loaderOff + loaderBytes.length;
  if (total > size) {
    throw new MultibootInfoError(`buildMultibootInfo: the MBI needs ${hex(total)} bytes but placeAt provides ${hex(size)} at ${hex(base)}`);
  }

  const bytes = new Uint8Array(total);
  const v = new DataView(bytes.buffer);
  const memLower = computeMemLower(memoryMap);
  const memUpper = computeMemUpper(memoryMap);
  const flags = QEMU_MBI_FLAGS;
  v.setUint32(mbiOff + MBI_OFFSETS.flags, flags, true);
  v.setUint32(mbiOff + MBI_OFFSETS.memLower, memLower, true);
  v.setUint32(mbiOff + MBI_OFFSETS.memUpper, memUpper, true);
  v.setUint32(mbiOff + MBI_OFFSETS.bootDevice, bootDevice, true);
  v.setUint32(mbiOff + MBI_OFFSETS.cmdline, base + cmdlineOff, true);
  v.setUint32(mbiOff + MBI_OFFSETS.modsCount, modules.length, true);
  v.setUint32(mbiOff + MBI_OFFSETS.modsAddr, base + modsOff, true);
  v.setUint32(mbiOff + MBI_OFFSETS.mmapLength, mmapLength, true);
  v.setUint32(mbiOff + MBI_OFFSETS.mmapAddr, base + mmapOff, true);
  v.setUint32(mbiOff + MBI_OFFSETS.bootLoaderName, base + loaderOff, true);

  memoryMap.forEach((e, i) => {
    const p = mmapOff + i * (4 + MMAP_ENTRY_SIZE);
    v.setUint32(p, MMAP_ENTRY_SIZE, true);
    v.setBigUint64(p + 4, toBig(e.base, 'base'), true);
    v.setBigUint64(p + 12, toBig(e.length, 'length'), true);
    v.setUint32(p + 20, e.type, true);
  });
  modules.forEach((m, i) => {
    const p = modsOff + i * 16;
    v.setUint32(p, m.start, true);
    v.setUint32(p + 4, m.end, true);
    v.setUint32(p + 8, base + modCmdlineOffs[i]!, true);
    v.setUint32(p + 12, 0, true);
  });
  bytes.set(cmdlineBytes, cmdlineOff);
  modCmdlines.forEach((c, i) => bytes.set(c, modCmdlineOffs[i]!));
  bytes.set(loaderBytes, loaderOff);

  return {
    address: base + mbiOff,
    base,
    bytes,
    flags,
    memLower,
    memUpper,
    bootDevice,
    mmapAddress: base + mmapOff,
    mmapLength,
    mmapEntryCount: memoryMap.length,
    modsAddress: base + modsOff,
    modsCount: modules.length,
    cmdlineAddress: base + cmdlineOff,
    moduleCmdlineAddresses: modCmdlineOffs.map((o) => base + o),
    bootLoaderNameAddress: base + loaderOff,
  };
}

/**
 * The E820 map SeaBIOS hands a guest under QEMU 7.2 (pc machine) with
 * `-m ramBytes`, as the Multiboot mmap shows it (measured with the hello
 * guest for 32 MiB .. 3000 MiB). Valid while all RAM is below the PCI hole
 * (ramBytes < 0xe0000000).
 */
export function qemuPcMemoryMap(ramBytes: number): MemoryMapEntry[] {
  if (!Number.isSafeInteger(ramBytes) || ramBytes < 0x200000 || ramBytes >= 0xe0000000 || ramBytes % 0x1000 !== 0) {
    throw new RangeError(`qemuPcMemoryMap: ramBytes ${ramBytes} must be a multiple of 4 KiB in [2 MiB, 3.5 GiB)`);
  }
  return [
    { base: 0n, length: 0x9fc00n, type: E820_USABLE },
    { base: 0x9fc00n, length: 0x400n, type: E820_RESERVED }, // EBDA
    { base: 0xf0000n, length: 0x10000n, type: E820_RESERVED }, // BIOS
    { base: 0x100000n, length: BigInt(ramBytes - 0x100000 - 0x20000), type: E820_USABLE },
    { base: BigInt(ramBytes - 0x20000), length: 0x20000n, type: E820_RESERVED }, // SeaBIOS high tables
    { base: 0xfffc0000n, length: 0x40000n, type: E820_RESERVED }, // BIOS flash
    { base: 0xfd00000000n, length: 0x300000000n, type: E820_RESERVED }, // AMD HyperTransport hole
  ];
}
