/**
 * The hypervisor taking a machine over and loading guests from image files:
 * shared by the full boot (after the OS hands off) and `firmament run`
 * (no firmware, as `qemu -kernel`).
 */
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import type { PcMachine } from '../machine/platform/pc.js';
import { Hypervisor, type HandoffMemoryRange } from './hypervisor.js';
import { HostMemoryManager } from './host-memory.js';
import type { Vm } from './vm.js';

/** A Multiboot image on disk and the VM to give it (`--guest path,mem=,vcpus=,cmdline=`). */
export interface GuestFileSpec {
  path: string;
  memBytes: number;
  vcpus: number;
  cmdline?: string;
}

/** Installs the hypervisor over `map`'s usable RAM (the handoff's memory map). */
export function installHypervisor(machine: PcMachine, map: readonly HandoffMemoryRange[]): Hypervisor {
  return new Hypervisor(machine, map, new HostMemoryManager(machine.memory, map));
}

/** Creates one VM per guest file on `hypervisor`. */
export function hypervisorWithGuests(
  _machine: PcMachine,
  hypervisor: Hypervisor,
  guests: readonly GuestFileSpec[],
): { hypervisor: Hypervisor; vms: Vm[] } {
  const vms = guests.map((g) =>
    hypervisor.createGuest({
      image: new Uint8Array(readFileSync(g.path)),
      fileName: basename(g.path),
      memBytes: g.memBytes,
      vcpus: g.vcpus,
      ...(g.cmdline !== undefined ? { cmdline: g.cmdline } : {}),
    }),
  );
  return { hypervisor, vms };
}
