/**
 * The hypervisor taking a machine over and loading guests from image files:
 * shared by the full boot (after the OS hands off) and `firmament run`
 * (no firmware, as `qemu -kernel`).
 */
import { basename } from 'node:path';
import type { PcMachine } from '../machine/platform/pc.js';
import { checkInputFile, readInputFile } from '../machine/platform/input-file.js';
import { Hypervisor, type GuestReport, type HandoffMemoryRange } from './hypervisor.js';
import { HostMemoryManager } from './host-memory.js';
import type { Vm } from './vm.js';
import type { BootFile } from './linux/index.js';

/** A Multiboot image on disk and the VM to give it (`--guest path,mem=,vcpus=,cmdline=`). */
export interface GuestFileSpec {
  path: string;
  memBytes: number;
  vcpus: number;
  cmdline?: string;
  /** --initrd FILE: a Linux initrd (bzImage, PVH module 0) or the first Multiboot module. */
  initrd?: string;
  /** --module FILE[,cmdline]: Multiboot/PVH modules, in order after the initrd. */
  modules?: readonly { path: string; cmdline?: string }[];
}

/** Beyond its RAM, an image may carry this much that is never loaded (symbols, debug info). */
const IMAGE_SLACK_BYTES = 64 * 1024 * 1024;

const imageLimits = (g: GuestFileSpec): { what: string; maxBytes: number } => ({ what: 'guest image', maxBytes: g.memBytes + IMAGE_SLACK_BYTES });

/** Checks a guest image (and its initrd and modules) are regular files of a plausible size, without reading them. */
export function checkGuestImage(g: GuestFileSpec): void {
  checkInputFile(g.path, imageLimits(g));
  if (g.initrd !== undefined) checkInputFile(g.initrd, { what: 'initrd', maxBytes: g.memBytes });
  for (const m of g.modules ?? []) checkInputFile(m.path, { what: 'module', maxBytes: g.memBytes });
}

/** The initrd and modules as the loaders take them (read with the same limits). */
function bootFiles(g: GuestFileSpec): { initrd?: BootFile; modules?: BootFile[] } {
  const initrd = g.initrd !== undefined ? { name: basename(g.initrd), bytes: readInputFile(g.initrd, { what: 'initrd', maxBytes: g.memBytes }) } : undefined;
  const modules = (g.modules ?? []).map((m) => ({ name: basename(m.path), bytes: readInputFile(m.path, { what: 'module', maxBytes: g.memBytes }), ...(m.cmdline !== undefined ? { cmdline: m.cmdline } : {}) }));
  return { ...(initrd ? { initrd } : {}), ...(modules.length > 0 ? { modules } : {}) };
}

/** Reads a guest image, refusing directories, devices and files far larger than the guest's RAM before reading. */
export function readGuestImage(g: GuestFileSpec): Uint8Array {
  return readInputFile(g.path, imageLimits(g));
}

/** A guest that could not be loaded: reported in its place among the others, as an error exit. */
export interface GuestLoadFailure {
  index: number;
  report: GuestReport;
}

export function loadFailureReport(g: GuestFileSpec, e: unknown): GuestReport {
  const err = e as Error;
  return { name: basename(g.path).replace(/\.elf$/, ''), exit: { reason: 'error', code: 2, detail: `not loaded: ${err.name}: ${err.message}` }, serial: '', exits: {}, vcpus: [] };
}

/** Installs the hypervisor over `map`'s usable RAM (the handoff's memory map). */
export function installHypervisor(machine: PcMachine, map: readonly HandoffMemoryRange[]): Hypervisor {
  return new Hypervisor(machine, map, new HostMemoryManager(machine.memory, map));
}

/**
 * Creates one VM per guest file on `hypervisor`.
 * A guest that cannot be loaded throws, unless `keepGoing`: then it is reported in
 * `failures` and the other guests still run.
 */
export function hypervisorWithGuests(
  machine: PcMachine,
  hypervisor: Hypervisor,
  guests: readonly GuestFileSpec[],
  opts: { keepGoing?: boolean } = {},
): { hypervisor: Hypervisor; vms: Vm[]; failures: GuestLoadFailure[] } {
  const vms: Vm[] = [];
  const failures: GuestLoadFailure[] = [];
  guests.forEach((g, index) => {
    try {
      vms.push(
        hypervisor.createGuest({
          image: readGuestImage(g),
          fileName: basename(g.path),
          memBytes: g.memBytes,
          vcpus: g.vcpus,
          ...(g.cmdline !== undefined ? { cmdline: g.cmdline } : {}),
          ...bootFiles(g),
        }),
      );
    } catch (e) {
      if (!opts.keepGoing) throw e;
      failures.push({ index, report: loadFailureReport(g, e) });
      machine.log('hypervisor', `guest ${g.path} not loaded: ${(e as Error).message}`);
    }
  });
  return { hypervisor, vms, failures };
}

/** The guests' reports in command-line order, those that never loaded in their places. */
export function mergeGuestReports(loaded: GuestReport[], failures: readonly GuestLoadFailure[]): GuestReport[] {
  const out = [...loaded];
  for (const f of [...failures].sort((a, b) => a.index - b.index)) out.splice(f.index, 0, f.report);
  return out;
}
