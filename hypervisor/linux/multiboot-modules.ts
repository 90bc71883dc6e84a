/**
 * Multiboot modules (`--module FILE[,cmdline]`, and `--initrd` as QEMU's
 * Multiboot loader reads -initrd): loaded one after another, page-aligned,
 * from the first page after the kernel's highest segment, as QEMU does.
 */
import type { MultibootModuleSpec } from '../multiboot/info.js';
import type { MultibootSegment } from '../multiboot/image.js';
import { LinuxLoadError } from './errors.js';
import { HIGH_TABLES_BYTES, PAGE, type BootFile, type BootWrite } from './boot-plan.js';

const hex = (n: number): string => `0x${n.toString(16)}`;

export interface PlacedModules {
  writes: BootWrite[];
  modules: MultibootModuleSpec[];
  /** The modules' ranges as segments, so that the MBI placement keeps clear of them too. */
  asSegments: MultibootSegment[];
}

export function placeMultibootModules(segments: readonly MultibootSegment[], files: readonly BootFile[], ramBytes: number): PlacedModules {
  let at = Math.ceil(Math.max(0x100000, ...segments.map((s) => s.paddr + s.memSize)) / PAGE) * PAGE;
  const out: PlacedModules = { writes: [], modules: [], asSegments: [] };
  for (const f of files) {
    const end = at + f.bytes.length;
    if (end > ramBytes - HIGH_TABLES_BYTES) throw new LinuxLoadError(`${f.name}: module of ${f.bytes.length} bytes at ${hex(at)} runs past guest RAM (${hex(ramBytes)} bytes; give the VM more with --mem)`);
    out.writes.push({ gpa: at, bytes: f.bytes, what: f.name });
    out.modules.push({ start: at, end, ...(f.cmdline !== undefined ? { cmdline: f.cmdline } : {}) });
    out.asSegments.push({ paddr: at, memSize: Math.max(1, f.bytes.length), fileBytes: new Uint8Array(0), fileOffset: 0, vaddr: BigInt(at), programHeader: null, flags: 4 });
    at = Math.ceil(end / PAGE) * PAGE;
  }
  return out;
}
