/** Linux loaders: bzImage (x86 boot protocol) and PVH, chosen from the file's format. */
import type { MemoryMapEntry } from '../multiboot/info.js';
import { planBzImage } from './bzimage.js';
import { planPvh } from './pvh.js';
import { identifyKernel } from './kernel-format.js';
import type { BootFile, LinuxBootPlan } from './boot-plan.js';

export { LinuxImageError, LinuxLoadError } from './errors.js';
export { identifyKernel, describeKernel, SUPPORTED_FORMATS, type KernelFormat } from './kernel-format.js';
export type { BootFile, LinuxBootPlan } from './boot-plan.js';

export interface LinuxGuestFiles {
  image: Uint8Array;
  fileName: string;
  cmdline?: string;
  initrd?: BootFile;
  modules?: readonly BootFile[];
  memBytes: number;
}

/** The boot plan for a Linux kernel file, or null when the file is not one (Multiboot, or unknown: the Multiboot loader names it). */
export function linuxBootPlan(g: LinuxGuestFiles, memoryMap: readonly MemoryMapEntry[]): LinuxBootPlan | null {
  const format = identifyKernel(g.image, g.fileName);
  if (format.kind !== 'bzimage' && format.kind !== 'pvh') return null;
  const opts = {
    cmdline: g.cmdline ?? '',
    ramBytes: g.memBytes,
    memoryMap,
    ...(g.initrd ? { initrd: g.initrd } : {}),
    ...(g.modules ? { modules: g.modules } : {}),
  };
  return format.kind === 'bzimage' ? planBzImage(g.image, g.fileName, opts) : planPvh(g.image, g.fileName, opts);
}
