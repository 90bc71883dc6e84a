/**
 * The monitor's `snapshot-save` and `snapshot-load` for a machine running VMs:
 * a VM's state record and memory into the snapshot store, and back into the
 * same VM in place. A running VM goes back incrementally (only the chunks
 * that differ, found from the dirty log since its last save when it can);
 * a stopped one is rewritten whole. `firmament snapshot save|restore
 * --monitor` go through these; `firmament snapshot clone` through `clone`.
 */
import type { Hypervisor } from '../../hypervisor/hypervisor.js';
import type { Vm } from '../../hypervisor/vm.js';
import type { SnapshotCommands } from '../../machine/debug/session.js';
import { SnapshotStore } from '../../vmm/snapshot/index.js';
import { restoreIncrementally, saveVmSnapshot } from '../../vmm/incremental-restore.js';
import { CloneSet } from '../../vmm/clones.js';
import type { Commands } from '../../machine/debug/protocol.js';

export function vmByName(hypervisor: Hypervisor, name: string | undefined): Vm {
  const vm = name === undefined ? hypervisor.vms[0] : hypervisor.vms.find((v) => v.name === name);
  if (!vm) throw new Error(name === undefined ? 'no VM on this machine' : `no VM named '${name}' (VMs: ${hypervisor.vms.map((v) => v.name).join(', ') || 'none'})`);
  return vm;
}

export function vmSnapshotCommands(hypervisor: Hypervisor, storeDir: string): SnapshotCommands {
  const store = (): SnapshotStore => SnapshotStore.open(storeDir);
  return {
    async save(args) {
      const vm = vmByName(hypervisor, args.vm);
      // Taken now, between scheduling rounds (the monitor runs when the machine yields): the copy is
      // consistent, and dirty logging starts from it for a later incremental restore.
      const clockNs = vm.clock.nowNs();
      const report = await saveVmSnapshot(hypervisor, vm, store(), args.name, { meta: { vm: vm.name }, ...(args.force ? { force: true } : {}) });
      return { vm: vm.name, ref: report.ref, digest: report.digest, memoryBytes: report.memoryBytes, bytesWritten: report.newBytes, clockNs };
    },
    async load(args) {
      const vm = vmByName(hypervisor, args.vm);
      if (vm.state === 'running') {
        const r = await restoreIncrementally(hypervisor, vm, store(), args.name);
        return { vm: vm.name, ref: args.name, clockNs: vm.clock.nowNs(), method: r.method, bytesMoved: r.bytesMoved, fullBytes: r.fullBytes };
      }
      const snap = await store().load(args.name);
      hypervisor.loadVmInPlace(vm, { state: snap.state, memory: snap.memory });
      return { vm: vm.name, ref: args.name, clockNs: vm.clock.nowNs(), method: 'full', bytesMoved: snap.memory.reduce((n, r) => n + r.bytes.length, 0), fullBytes: vm.vmMemory.ramBytes };
    },
  };
}

/**
 * The monitor's `clone`: linked clones of a stored snapshot, or of a running
 * VM as it is now (taken between scheduling rounds, so consistent), started
 * in this machine at once. They share the image's frames copy-on-write and
 * end like any VM; the machine ends when every VM, clones included, has.
 */
export function vmCloneCommand(hypervisor: Hypervisor, storeDir: string): (args: Commands['clone']['args']) => Promise<Commands['clone']['result']> {
  return async (args) => {
    if (args.from !== undefined && args.vm !== undefined) throw new Error(`clone: give 'from' (a snapshot in the store) or 'vm' (a running VM), not both`);
    const vm = args.from === undefined ? vmByName(hypervisor, args.vm) : null;
    if (vm?.state === 'stopped') throw new Error(`clone: VM ${vm.name} has stopped (${vm.exit?.reason ?? 'stopped'}); its clones would not run (save it with snapshot-save to keep it)`);
    const source = vm ? `VM ${vm.name}` : `snapshot ${args.from}`;
    const image = vm ? hypervisor.snapshotVm(vm) : await SnapshotStore.open(storeDir).load(args.from!);
    const set = CloneSet.create(hypervisor, { state: image.state, memory: image.memory }, { count: args.count, ...(args.name !== undefined ? { name: args.name } : {}) });
    // The image's own hold goes now: each clone keeps the frames it maps until it is removed.
    set.image.release();
    return {
      source,
      imageBytes: set.image.ramBytes,
      clones: set.clones.map((vm, index) => ({ name: vm.name, index, createMs: Math.round(set.createMs[index]! * 1000) / 1000 })),
      hostFramesFree: hypervisor.host.allocator.freeFrames,
    };
  };
}
