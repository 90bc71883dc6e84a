/**
 * Runs Multiboot guests under the hypervisor on a fresh machine (no firmware),
 * the way `qemu-system-x86_64 -kernel` runs one: `firmament run`.
 */
import { readFileSync } from 'node:fs';
import { PcMachine, type MachineExit, type PcConfig } from '../machine/platform/pc.js';
import { DEFAULT_ROM } from '../machine/platform/boot.js';
import type { Hypervisor } from './hypervisor.js';
import { checkGuestImage, hypervisorWithGuests, type GuestFileSpec } from './guest-files.js';
import type { Vm } from './vm.js';

const MiB = 1024 * 1024;
/** Host RAM the hypervisor keeps for EPT tables and its own frames, beyond guest RAM. */
const HOST_OVERHEAD = 32 * MiB;

export interface GuestMachine {
  machine: PcMachine;
  hypervisor: Hypervisor;
  vms: Vm[];
}

export function createGuestMachine(guests: GuestFileSpec[], opts: { pcpus: number; pace?: PcConfig['pace']; timerSlackMs?: number | undefined }): GuestMachine {
  // A missing file, a directory or /dev/zero is refused before a machine is built.
  for (const g of guests) checkGuestImage(g);
  const hostBytes = guests.reduce((n, g) => n + g.memBytes, 0) + HOST_OVERHEAD;
  const machine = new PcMachine({ memBytes: hostBytes, cpus: opts.pcpus, rom: new Uint8Array(readFileSync(DEFAULT_ROM)), pace: opts.pace ?? 'realtime', ...(opts.timerSlackMs !== undefined ? { timerSlackMs: opts.timerSlackMs } : {}) });
  // No firmware ran, so the handoff map is the machine's RAM as the firmware would report it.
  const map = [
    { base: 0, length: 0xa0000, type: 1 },
    { base: 0x100000, length: machine.memory.lowRamTop - 0x100000, type: 1 },
  ];
  const { hypervisor: hv, vms } = hypervisorWithGuests(machine, map, guests);
  hv.onAllStopped = () => {
    const first = vms[0]!.exit!;
    machine.finish({ reason: first.reason === 'stopped' ? 'stopped' : first.reason, code: first.code, ...(first.detail ? { detail: first.detail } : {}), atNs: machine.now() } as MachineExit);
  };
  return { machine, hypervisor: hv, vms };
}
