/** Multiboot v1 loader: image parsing and boot information. */
export { MultibootError, MultibootInfoError } from './errors.js';
export {
  MULTIBOOT_HEADER_MAGIC,
  MULTIBOOT_BOOTLOADER_MAGIC,
  MULTIBOOT_SEARCH_BYTES,
  MB_HEADER_PAGE_ALIGN,
  MB_HEADER_MEMORY_INFO,
  MB_HEADER_VIDEO_MODE,
  MB_HEADER_AOUT_KLUDGE,
  parseMultibootImage,
  materializeSegment,
  loadIntoRam,
} from './image.js';
export type { MultibootAoutKludge, MultibootHeaderInfo, MultibootSegment, MultibootLoadPlan, ParseMultibootOptions } from './image.js';
export {
  MBI_SIZE,
  MBI_OFFSETS,
  MBI_FLAG_MEMORY,
  MBI_FLAG_BOOT_DEVICE,
  MBI_FLAG_CMDLINE,
  MBI_FLAG_MODS,
  MBI_FLAG_MMAP,
  MBI_FLAG_BOOT_LOADER_NAME,
  QEMU_MBI_FLAGS,
  QEMU_BOOT_DEVICE,
  MMAP_ENTRY_SIZE,
  DEFAULT_MBI_REGION,
  E820_USABLE,
  E820_RESERVED,
  buildMultibootInfo,
  computeMemLower,
  computeMemUpper,
  qemuPcMemoryMap,
} from './info.js';
export type { MemoryMapEntry, MultibootModuleSpec, BuildMultibootInfoOptions, MultibootInfo } from './info.js';
