/**
 * Runs Multiboot guests under the hypervisor on a fresh machine (no firmware),
 * the way `qemu-system-x86_64 -kernel` runs one: `firmament run`. A VM can
 * also come from a snapshot (`run --restore`) or be a linked clone of one.
 */
import { readFileSync } from 'node:fs';
import { PcMachine, type MachineExit, type PcConfig } from '../machine/platform/pc.js';
import { DEFAULT_ROM } from './boot.js';
import { Hypervisor, type VmImage } from '../hypervisor/hypervisor.js';
import { HostMemoryManager } from '../hypervisor/host-memory.js';
import { checkGuestImage, hypervisorWithGuests, type GuestFileSpec } from '../hypervisor/guest-files.js';
import type { Vm } from '../hypervisor/vm.js';
import { SharedRam } from '../machine/memory/shared-ram.js';
import type { HostShape } from './live-update/state.js';

const MiB = 1024 * 1024;
/** Host RAM the hypervisor keeps for EPT tables and its own frames, beyond guest RAM. */
const HOST_OVERHEAD = 32 * MiB;

export interface GuestMachine {
  machine: PcMachine;
  hypervisor: Hypervisor;
  vms: Vm[];
  /** How the host was built: a live update builds the same one (vmm/live-update). */
  shape?: HostShape;
  /** The host RAM's memfd when built with `sharedRam`. */
  sharedRam?: SharedRam;
}

export interface GuestMachineOptions {
  pcpus: number;
  pace?: PcConfig['pace'];
  timerSlackMs?: number | undefined;
  /** Host RAM beyond what the guests need (clones, images, a VM migrating in). */
  extraHostBytes?: number;
  /** Host RAM in a shared-memory file (memfd) that a live update hands to its successor, instead of a SharedArrayBuffer. */
  sharedRam?: boolean;
  /** `--rtc`: RTC time (Unix seconds, UTC) at virtual time 0; default a fixed date (deterministic). */
  rtcEpochSeconds?: number | undefined;
}

/** The machine `run` builds: RAM for the guests plus the hypervisor's own, handed to the hypervisor as the firmware would. */
export function guestHost(guestBytes: number, opts: GuestMachineOptions): { machine: PcMachine; hypervisor: Hypervisor; shape: HostShape; sharedRam?: SharedRam } {
  const hostBytes = Math.ceil((guestBytes + HOST_OVERHEAD + (opts.extraHostBytes ?? 0)) / (2 * MiB)) * 2 * MiB;
  const sharedRam = opts.sharedRam ? SharedRam.create(hostBytes) : undefined;
  const machine = guestHostMachine({ hostBytes, pcpus: opts.pcpus, pace: opts.pace ?? 'realtime', ...(opts.timerSlackMs !== undefined ? { timerSlackMs: opts.timerSlackMs } : {}) }, sharedRam?.bytes, opts.rtcEpochSeconds);
  // No firmware ran, so the handoff map is the machine's RAM as the firmware would report it.
  const map = [
    { base: 0, length: 0xa0000, type: 1 },
    { base: 0x100000, length: machine.memory.lowRamTop - 0x100000, type: 1 },
  ];
  // Nor did anything program the host's PIT, which powers on ticking at 18.2 Hz (QEMU's model) for
  // nobody: the VMs have their own. Stop it (mode 0, no count), or it wakes an idle machine ~15 times
  // a second (docs/performance.md, "Idle").
  machine.io.ioWrite(0x43, 1, 0x30);
  const shape: HostShape = { hostBytes, pcpus: opts.pcpus, pace: opts.pace ?? 'realtime', ...(opts.timerSlackMs !== undefined ? { timerSlackMs: opts.timerSlackMs } : {}), map };
  return { machine, hypervisor: new Hypervisor(machine, map, new HostMemoryManager(machine.memory, map)), shape, ...(sharedRam ? { sharedRam } : {}) };
}

/** The bare host machine of `run` (no hypervisor yet): also what a live update's successor builds before it adopts the hypervisor. */
export function guestHostMachine(shape: Omit<HostShape, 'map'>, ramBacking?: Uint8Array, rtcEpochSeconds?: number): PcMachine {
  return new PcMachine({ memBytes: shape.hostBytes, cpus: shape.pcpus, rom: new Uint8Array(readFileSync(DEFAULT_ROM)), pace: shape.pace, ...(shape.timerSlackMs !== undefined ? { timerSlackMs: shape.timerSlackMs } : {}), ...(ramBacking ? { ramBacking } : {}), ...(rtcEpochSeconds !== undefined ? { rtcEpochSeconds } : {}) });
}

/** The machine ends with the first VM's exit once every VM has stopped, at that VM's own virtual time. */
export function finishWithFirstVm(machine: PcMachine, hv: Hypervisor, vms: readonly Vm[]): void {
  hv.onAllStopped = () => {
    const first = vms[0]!.exit!;
    machine.finish({ reason: first.reason === 'stopped' ? 'stopped' : first.reason, code: first.code, ...(first.detail ? { detail: first.detail } : {}), atNs: first.atNs ?? machine.now() } as MachineExit);
  };
}

export function createGuestMachine(guests: GuestFileSpec[], opts: GuestMachineOptions): GuestMachine {
  // A missing file, a directory or /dev/zero is refused before a machine is built.
  for (const g of guests) checkGuestImage(g);
  const { machine, hypervisor, shape, sharedRam } = guestHost(guests.reduce((n, g) => n + g.memBytes, 0), opts);
  const { vms } = hypervisorWithGuests(machine, hypervisor, guests);
  finishWithFirstVm(machine, hypervisor, vms);
  return { machine, hypervisor, vms, shape, ...(sharedRam ? { sharedRam } : {}) };
}

/**
 * A machine whose VMs continue from snapshots (`run --restore`, a failure
 * snapshot): same serial, exit and virtual time as the run they came from.
 */
export function restoreGuestMachine(images: VmImage | readonly VmImage[], opts: GuestMachineOptions & { populate?: 'eager' | 'lazy'; portable?: boolean }): GuestMachine {
  const list = Array.isArray(images) ? (images as readonly VmImage[]) : [images as VmImage];
  const memBytes = list.reduce((n, image) => n + (typeof image.state['memBytes'] === 'number' ? image.state['memBytes'] : 0), 0);
  const { machine, hypervisor, shape, sharedRam } = guestHost(memBytes, opts);
  try {
    const vms = list.map((image) => hypervisor.restoreVm(image.state, { ranges: image.memory, populate: opts.populate ?? 'eager' }, opts.portable ? { portable: true } : {}));
    finishWithFirstVm(machine, hypervisor, vms);
    return { machine, hypervisor, vms, shape, ...(sharedRam ? { sharedRam } : {}) };
  } catch (e) {
    hypervisor.close();
    machine.close();
    throw e;
  }
}
