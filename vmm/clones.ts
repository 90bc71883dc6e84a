/**
 * Linked clones (docs/vm-state.md): N VMs started from one VM image in one
 * machine. The image's memory is copied once into a SharedImage; every clone
 * maps those frames read-only and copies a page on its first write
 * (copy-on-write), except its private writable ranges, which get frames of
 * their own from the start.
 */
import { FRAME_SIZE } from '../hypervisor/memory/frame-allocator.js';
import { SharedImage, type GpaRange, type GuestMemoryStats } from '../hypervisor/memory/guest-memory.js';
import type { Hypervisor, VmImage } from '../hypervisor/hypervisor.js';
import type { Vm } from '../hypervisor/vm.js';
import type { MachineExit } from '../machine/platform/pc.js';
import { StateError } from '../machine/state.js';
import { createGuestMachine, guestHost, type GuestMachine, type GuestMachineOptions } from './run-guests.js';
import type { GuestFileSpec } from '../hypervisor/guest-files.js';

/** A clone request this machine cannot serve (names taken, not enough host RAM), said with the numbers. */
export class CloneError extends Error {
  override name = 'CloneError';
}

/** Host RAM each clone gets beyond its private ranges: EPT tables, its control area, pages it copies on write. */
export const CLONE_HEADROOM_BYTES = 512 * 1024;

export interface CloneOptions {
  count: number;
  /** Ranges each clone gets private frames for from the start (the profile's private writable range). */
  privateRanges?: readonly GpaRange[];
  /** Clone names are `${name}-${index}` (default: the image's VM name). */
  name?: string;
  portable?: boolean;
}

/** One clone's memory as the report shows it. */
export interface CloneMemoryReport {
  name: string;
  index: number;
  sharedBytes: number;
  privateBytes: number;
  cowCopies: number;
  eptTableFrames: number;
  /** Frames the clone costs the host: private pages + EPT tables (vCPU control areas are 256 bytes, 16 to a shared frame). */
  hostFrames: number;
}

export interface HostFrameReport {
  /** Frames in use on the allocator now. */
  used: number;
  /** Frames in use before the image was created. */
  before: number;
  /** Frames of the shared image (its guest RAM). */
  image: number;
  /** Sum over clones of private pages and EPT table frames. */
  clones: number;
}

function validRanges(ranges: readonly GpaRange[], memBytes: number): void {
  ranges.forEach((r, i) => {
    if (!Number.isSafeInteger(r.gpa) || !Number.isSafeInteger(r.length) || r.gpa < 0 || r.length <= 0 || r.gpa % FRAME_SIZE !== 0 || r.length % FRAME_SIZE !== 0 || r.gpa + r.length > memBytes)
      throw new StateError('clones', `privateRanges[${i}]`, `0x${r.gpa.toString(16)}+0x${r.length.toString(16)} is not a page-aligned range inside ${memBytes} bytes of guest RAM`);
  });
}

/** N linked clones of one image on one hypervisor. destroy() gives every frame back. */
export class CloneSet {
  readonly clones: Vm[] = [];
  /** Wall time to create each clone (restoreVm over the shared image), ms. */
  readonly createMs: number[] = [];
  readonly framesBefore: number;
  readonly image: SharedImage;

  private constructor(
    readonly hypervisor: Hypervisor,
    vmImage: VmImage,
    readonly options: CloneOptions,
  ) {
    const memBytes = vmImage.state['memBytes'];
    if (typeof memBytes !== 'number') throw new StateError('clones', 'memBytes', 'the image has no guest RAM size');
    if (!Number.isInteger(options.count) || options.count < 1) throw new RangeError(`clones: count ${options.count} must be a whole number >= 1`);
    validRanges(options.privateRanges ?? [], memBytes);
    this.framesBefore = hypervisor.host.allocator.usedFrames;
    const name = options.name ?? String(vmImage.state['name'] ?? 'vm');
    checkCloneRoom(hypervisor, memBytes, options);
    const taken = new Set(hypervisor.vms.map((v) => v.name));
    for (let i = 0; i < options.count; i++) if (taken.has(`${name}-${i}`)) throw new CloneError(`a VM named '${name}-${i}' already runs on this machine; choose another clone name`);
    this.image = SharedImage.create(hypervisor.host, name, memBytes, vmImage.memory);
    try {
      for (let i = 0; i < options.count; i++) {
        const t0 = performance.now();
        const vm = hypervisor.restoreVm(vmImage.state, { base: this.image, ...(options.privateRanges ? { privateRanges: options.privateRanges } : {}) }, { name: `${name}-${i}`, ...(options.portable ? { portable: true } : {}) });
        vm.cloneIndex = i;
        this.createMs.push(performance.now() - t0);
        this.clones.push(vm);
      }
    } catch (e) {
      this.destroy();
      throw e;
    }
  }

  /** Copies the image once and starts `count` clones of it (scheduled at once). */
  static create(hypervisor: Hypervisor, image: VmImage, options: CloneOptions): CloneSet {
    return new CloneSet(hypervisor, image, options);
  }

  memoryReports(): CloneMemoryReport[] {
    return this.clones.map((vm, index) => cloneMemoryReport(vm, index, vm.vmMemory.stats()));
  }

  frames(): HostFrameReport {
    return {
      used: this.hypervisor.host.allocator.usedFrames,
      before: this.framesBefore,
      image: this.image.ramBytes / FRAME_SIZE,
      clones: this.memoryReports().reduce((n, r) => n + r.hostFrames, 0),
    };
  }

  /** Removes every clone, then the image's own hold on its frames. */
  destroy(): void {
    for (const vm of this.clones.splice(0)) this.hypervisor.removeVm(vm);
    this.image.release();
  }
}

/**
 * Refuses up front what cannot fit, naming the numbers: the image's copy of
 * guest RAM plus, per clone, its private ranges and headroom for EPT tables
 * and copies on write.
 */
function checkCloneRoom(hypervisor: Hypervisor, memBytes: number, options: CloneOptions): void {
  const privateBytes = (options.privateRanges ?? []).reduce((n, r) => n + r.length, 0);
  const need = memBytes + options.count * (privateBytes + CLONE_HEADROOM_BYTES);
  const free = hypervisor.host.allocator.freeFrames * FRAME_SIZE;
  if (need > free) {
    const mib = (b: number): string => `${(b / (1024 * 1024)).toFixed(1)} MiB`;
    throw new CloneError(`${options.count} clone(s) of a ${mib(memBytes)} VM need ${mib(need)} of host RAM (the image copy plus ${mib(privateBytes + CLONE_HEADROOM_BYTES)} per clone); this machine has ${mib(free)} free (firmament run --clone-room SIZE reserves more)`);
  }
}

export function cloneMemoryReport(vm: Vm, index: number, s: GuestMemoryStats): CloneMemoryReport {
  return {
    name: vm.name,
    index,
    sharedBytes: s.sharedBytes,
    privateBytes: s.privateBytes,
    cowCopies: s.cowCopies,
    eptTableFrames: s.eptTableFrames,
    hostFrames: s.privateBytes / FRAME_SIZE + s.eptTableFrames,
  };
}

/** A machine sized for `count` clones of `image`, running them; it finishes when every clone has stopped. */
export function cloneMachine(image: VmImage, options: CloneOptions & Omit<GuestMachineOptions, 'extraHostBytes'>): GuestMachine & { set: CloneSet } {
  const memBytes = typeof image.state['memBytes'] === 'number' ? image.state['memBytes'] : 0;
  const privateBytes = (options.privateRanges ?? []).reduce((n, r) => n + r.length, 0);
  const { machine, hypervisor } = guestHost(memBytes, { ...options, extraHostBytes: options.count * (privateBytes + CLONE_HEADROOM_BYTES) });
  try {
    const set = CloneSet.create(hypervisor, image, options);
    const clones = [...set.clones];
    hypervisor.onAllStopped = () => machine.finish(worstExit(clones, machine.now()));
    return { machine, hypervisor, vms: set.clones, set };
  } catch (e) {
    hypervisor.close();
    machine.close();
    throw e;
  }
}

/** Whether a clone ended well: isa-debug-exit with value 0, as `boot` judges guests. */
export function cloneSucceeded(vm: Vm): boolean {
  return vm.exit?.reason === 'debug-exit' && vm.exit.code === 1;
}

/** The machine's exit: the first clone that did not succeed, else the first clone's. */
function worstExit(clones: readonly Vm[], nowNs: number): MachineExit {
  const vm = clones.find((v) => !cloneSucceeded(v)) ?? clones[0]!;
  const e = vm.exit ?? { reason: 'stopped' as const, code: 0 };
  return { reason: e.reason, code: e.code, detail: `${vm.name}: ${e.detail ?? e.reason}`, atNs: e.atNs ?? nowNs };
}

/**
 * Runs a guest (the `clone` guest, or any that makes the CHECKPOINT
 * hypercall) until its first VM checkpoints, and returns that VM's image:
 * the base of linked clones. Throws if the guest stops first.
 */
export async function snapshotAtCheckpoint(guest: GuestFileSpec, opts: GuestMachineOptions & { timeoutMs?: number }): Promise<VmImage> {
  const g = createGuestMachine([guest], opts);
  try {
    const vm = g.vms[0]!;
    let reached = false;
    vm.onCheckpoint = () => {
      reached = true;
      g.machine.pauseAfterRound();
    };
    let exit: MachineExit | null = null;
    const running = g.machine.run(opts.timeoutMs !== undefined ? { timeoutMs: opts.timeoutMs } : {}).then((e) => (exit = e));
    await waitFor(() => (reached && g.machine.paused) || exit !== null);
    if (exit !== null || !reached) {
      const e: MachineExit = exit ?? (await running);
      throw new Error(`${guest.path}: the guest stopped before its CHECKPOINT hypercall: ${e.reason} code ${e.code}${e.detail ? ` (${e.detail})` : ''}\n${vm.serial}`);
    }
    const image = g.hypervisor.snapshotVm(vm);
    g.machine.stop('checkpoint snapshot taken');
    await running;
    return image;
  } finally {
    g.hypervisor.close();
    g.machine.close();
  }
}

/** Resolves once `cond` holds, checking on the event loop (the machine runs in between). */
async function waitFor(cond: () => boolean): Promise<void> {
  while (!cond()) await new Promise((r) => setTimeout(r, 2));
}
