/**
 * Fills the inspection API's typed hooks from a hypervisor: guest vCPUs
 * join the CPU list, each VM's COM1 becomes a console, and the VMs pane
 * lists VMs with their exits and the pCPU each vCPU last ran on.
 */
import type { Hypervisor } from '../../hypervisor/hypervisor.js';
import type { PcMachine } from '../../machine/platform/pc.js';
import type { CpuEntry, InspectHooks } from '../../machine/inspect/snapshot.js';
import { vcpuView, type VmView } from '../../machine/inspect/vcpus-view.js';
import { migrationStatus } from '../../vmm/migration/source.js';

const TAIL = 32 * 1024;

export function guestHooks(machine: PcMachine, hypervisor: Hypervisor): InspectHooks {
  // A closed engine must never be touched again (Unicorn would crash the process).
  const open = (v: { cpu: { isClosed: boolean } }): boolean => !v.cpu.isClosed;
  const guestCpus = (): CpuEntry[] => hypervisor.vms.flatMap((vm) => vm.vcpus.filter(open).map((v) => ({ id: `vm:${vm.name}/vcpu${v.index}`, kind: 'vm-vcpu' as const, cpu: v.cpu })));
  return {
    guestCpus,
    vmConsoles: () =>
      hypervisor.vms.flatMap((vm) => {
        const debugcon = vm.debugcon.text();
        return [
          { id: `vm:${vm.name}:com1`, label: `${vm.name} COM1`, text: vm.serial.slice(-TAIL), totalBytes: vm.serial.length },
          ...(debugcon ? [{ id: `vm:${vm.name}:debugcon`, label: `${vm.name} debugcon`, text: debugcon.slice(-TAIL), totalBytes: debugcon.length }] : []),
        ];
      }),
    vms: (): VmView[] => {
      const reports = hypervisor.guestReports();
      let index = machine.cpus.length;
      return hypervisor.vms.map((vm, k) => {
        const report = reports[k];
        return {
          name: vm.name,
          state: migrationStatus(vm) ?? vm.state,
          exit: vm.exit ? `${vm.exit.reason} code ${vm.exit.code}` : null,
          exits: report?.exits ?? {},
          vcpus: vm.vcpus.filter(open).map((v) => {
            const last = report?.vcpus.find((r) => r.index === v.index);
            const view = vcpuView(v.cpu, index++, `vm:${vm.name}/vcpu${v.index}`, 'vm-vcpu', {}, last ? `pcpu${last.lastPcpu} (${last.hostMs} ms)` : 'not run yet');
            return last?.idle ? { ...view, idle: last.idle } : view;
          }),
        };
      });
    },
  };
}
