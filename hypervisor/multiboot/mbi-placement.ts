/**
 * Where the Multiboot information (MBI, memory map, strings) goes in guest
 * RAM. Normally the low region QEMU uses (0x9000); a kernel that loads a
 * segment there keeps its bytes, and the MBI moves to the first page-aligned
 * place after the kernel's segments, as QEMU puts its Multiboot buffer after
 * the kernel. No room anywhere is a clear error, never a silent overwrite.
 */
import { DEFAULT_MBI_REGION } from './info.js';
import { MultibootError, hex } from './errors.js';
import type { MultibootSegment } from './image.js';

const PAGE = 0x1000;
/** Conventional memory ends here (the EBDA and the legacy hole follow); RAM resumes at 1 MiB. */
const LOW_RAM_END = 0x9fc00;
const HIGH_RAM_START = 0x100000;

type Region = { base: number; size: number };

const overlaps = (a: Region, s: MultibootSegment): boolean => a.base < s.paddr + s.memSize && s.paddr < a.base + a.size;

/** Inside RAM the guest may use: conventional memory, or from 1 MiB up to the end of guest RAM. */
const usable = (r: Region, ramBytes: number): boolean => (r.base + r.size <= LOW_RAM_END) || (r.base >= HIGH_RAM_START && r.base + r.size <= ramBytes);

export function chooseMbiRegion(segments: readonly MultibootSegment[], ramBytes: number, fileName: string): Region {
  const size = DEFAULT_MBI_REGION.size;
  const candidates: Region[] = [DEFAULT_MBI_REGION, ...segments.map((s) => ({ base: Math.ceil((s.paddr + s.memSize) / PAGE) * PAGE, size })).sort((a, b) => a.base - b.base), { base: HIGH_RAM_START, size }];
  for (const c of candidates) if (usable(c, ramBytes) && !segments.some((s) => overlaps(c, s))) return c;
  const s = segments.find((x) => overlaps(DEFAULT_MBI_REGION, x)) ?? segments[0];
  throw new MultibootError(fileName, s?.fileOffset ?? 0, s?.programHeader !== null && s ? `program header ${s.programHeader}` : 'load segment', `leaves no ${hex(size)}-byte gap in guest RAM (${hex(ramBytes)} bytes) for the Multiboot information`);
}
