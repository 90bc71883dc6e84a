/**
 * The monitor's `snapshot-save` and `snapshot-load` for a machine running VMs:
 * a VM's state record and memory into the snapshot store, and back into the
 * same VM in place. A running VM goes back incrementally (only the chunks
 * that differ, found from the dirty log since its last save when it can);
 * a stopped one is rewritten whole. `firmament snapshot save|restore
 * --monitor` go through these.
 */
import type { Hypervisor } from '../../hypervisor/hypervisor.js';
import type { Vm } from '../../hypervisor/vm.js';
import type { SnapshotCommands } from '../../machine/debug/session.js';
import { SnapshotStore } from '../../vmm/snapshot/index.js';
import { restoreIncrementally, saveVmSnapshot } from '../../vmm/incremental-restore.js';

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
