/**
 * The monitor's `snapshot-save` and `snapshot-load` for a machine running VMs:
 * a VM's state record and memory into the snapshot store, and back into the
 * same VM in place. `firmament snapshot save|restore --monitor` and the TUI
 * go through these.
 */
import type { Hypervisor } from '../../hypervisor/hypervisor.js';
import type { Vm } from '../../hypervisor/vm.js';
import type { SnapshotCommands } from '../../machine/debug/session.js';
import { SnapshotStore } from '../../vmm/snapshot/index.js';

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
      // Taken now, between scheduling rounds (the monitor runs when the machine yields): the copy is consistent.
      const image = hypervisor.snapshotVm(vm);
      const report = await store().save(args.name, { state: image.state, memory: image.memory, meta: { vm: vm.name } }, args.force ? { force: true } : {});
      return { vm: vm.name, ref: report.ref, digest: report.digest, memoryBytes: report.memoryBytes, bytesWritten: report.newBytes, clockNs: image.state['clockNs'] as number };
    },
    async load(args) {
      const vm = vmByName(hypervisor, args.vm);
      const snap = await store().load(args.name);
      hypervisor.loadVmInPlace(vm, { state: snap.state, memory: snap.memory });
      return { vm: vm.name, ref: args.name, clockNs: vm.clock.nowNs() };
    },
  };
}
