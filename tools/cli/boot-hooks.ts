/**
 * Inspection hooks for the full boot path: the firmware-container list comes
 * from the OS's handoff block, and once the hypervisor takes over, its VMs,
 * vCPUs and consoles join the views (tools/cli/guest-hooks.ts).
 */
import type { Hypervisor } from '../../hypervisor/hypervisor.js';
import type { Handoff } from '../../machine/platform/handoff.js';
import type { PcMachine } from '../../machine/platform/pc.js';
import type { InspectHooks } from '../../machine/inspect/snapshot.js';
import type { FirmwareContainerView } from '../../machine/inspect/timeline-view.js';
import { guestHooks } from './guest-hooks.js';

export interface BootHooks {
  hooks: InspectHooks;
  /** Pass as boot()'s onHandoff listener. */
  onHandoff(h: Handoff, hv: Hypervisor | null): void;
}

export function bootHooks(machine: PcMachine): BootHooks {
  let containers: FirmwareContainerView[] = [];
  let guests: InspectHooks = {};
  return {
    hooks: {
      firmwareContainers: () => containers,
      guestCpus: () => guests.guestCpus?.() ?? [],
      vmConsoles: () => guests.vmConsoles?.() ?? [],
      vms: () => guests.vms?.() ?? [],
    },
    onHandoff(h, hv) {
      containers = h.containers.map((c) => ({ name: c.name, status: c.status, findings: c.findings.map((f) => ({ severity: f.severity, message: f.text })) }));
      if (hv) guests = guestHooks(machine, hv);
    },
  };
}
