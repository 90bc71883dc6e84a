/**
 * Behaviour profiles for `boot --guest ... --monitor`: the monitor session is
 * made with the machine, long before the firmware hands off to the
 * hypervisor, so its security commands start out refusing and the security
 * service starts at the handoff, before the guests' first instruction (as
 * `run --monitor` watches its VM from the start). Anomaly listeners that
 * subscribed early (the session's `anomaly` event) are carried over.
 */
import type { Hypervisor } from '../../hypervisor/hypervisor.js';
import type { SecurityService } from '../../hypervisor/security/security-service.js';
import type { SecurityCommands } from '../../machine/debug/session.js';
import type { MonitorEvents } from '../../machine/debug/protocol.js';

type AnomalyListener = (a: MonitorEvents['anomaly']) => void;

export interface BootSecurity {
  /** For the DebugSession (opts.security). */
  commands: SecurityCommands;
  /** Call at the handoff: starts the service over the hypervisor's VMs (none if the OS handed off to no hypervisor). */
  onHandoff(hv: Hypervisor | null): void;
  close(): void;
}

const NOT_YET = 'behaviour profiles need VMs: the firmware has not handed off to the hypervisor yet (boot with --guest)';
const NO_HYPERVISOR = 'behaviour profiles need VMs: this boot handed off to no hypervisor';

export async function bootSecurity(): Promise<BootSecurity> {
  const mod = await import('../../vmm/security-commands.js');
  const listeners = new Set<AnomalyListener>();
  let service: SecurityService | null = null;
  let live: SecurityCommands | null = null;
  let handedOff = false;
  const current = (): SecurityCommands => {
    if (live) return live;
    throw new Error(handedOff ? NO_HYPERVISOR : NOT_YET);
  };
  return {
    commands: {
      set: (args) => current().set(args),
      get: (args) => current().get(args),
      learn: (args) => current().learn(args),
      // None yet before the handoff (a TUI attached early keeps asking; it is not an error).
      anomalies: (args) => (live ? live.anomalies(args) : { anomalies: [] }),
      onAnomaly: (listener) => {
        listeners.add(listener);
        return () => listeners.delete(listener);
      },
    },
    onHandoff(hv) {
      handedOff = true;
      if (!hv || service) return;
      service = mod.startSecurity(hv);
      live = mod.securityCommands(service);
      live.onAnomaly((a) => {
        for (const l of listeners) l(a);
      });
    },
    close() {
      service?.close();
      listeners.clear();
    },
  };
}
