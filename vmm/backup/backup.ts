/**
 * Application-consistent backups (docs/functions.md, "Backup"): pick the
 * toolkit for the guest's declared profile, ready the guest as it says
 * (quiesce through the agent mailbox and wait for the acknowledgement, with a
 * timeout), snapshot the VM into the store, then thaw it.
 */
import type { Hypervisor } from '../../hypervisor/hypervisor.js';
import type { Vm } from '../../hypervisor/vm.js';
import type { SnapshotStore } from '../snapshot/index.js';
import { saveVmSnapshot } from '../incremental-restore.js';
import { AGENT_REQUEST, type BackupAgents } from './agent.js';
import type { ToolkitRegistry } from './toolkits.js';
import type { BackupDone } from '../../machine/debug/protocol.js';

/** What a backup reports: the monitor's `backup` answer (machine/debug/protocol.ts has the fields). */
export type BackupResult = BackupDone;

export class BackupError extends Error {
  override name = 'BackupError';
}

export async function backupVm(hypervisor: Hypervisor, agents: BackupAgents, toolkits: ToolkitRegistry, vm: Vm, store: SnapshotStore, ref: string, opts: { force?: boolean } = {}): Promise<BackupResult> {
  if (vm.state !== 'running') throw new BackupError(`${vm.name} is not running (${vm.exit?.reason ?? vm.state}): nothing to quiesce; use snapshot save`);
  const agent = agents.agents.get(vm) ?? null;
  const toolkit = toolkits.pick(agent?.profile ?? null);
  const meta = { vm: vm.name, toolkit: toolkit.name, profile: agent?.profile ?? '' };
  if (toolkit.method === 'crash-consistent' || !agent) {
    const r = await saveVmSnapshot(hypervisor, vm, store, ref, { meta: { ...meta, consistency: 'crash' }, ...(opts.force ? { force: true } : {}) });
    return { vm: vm.name, ref, digest: r.digest, toolkit: toolkit.name, profile: agent?.profile ?? null, consistency: 'crash', quiesceMs: 0, heldMs: 0, memoryBytes: r.memoryBytes };
  }
  const t0 = performance.now();
  let seq = 0;
  const acked = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      agent.onAck = null;
      reject(new BackupError(`${vm.name}: the guest agent (profile '${agent.profile}', toolkit ${toolkit.name}) did not acknowledge quiesce within ${toolkit.quiesceTimeoutMs} ms; no snapshot was taken`));
    }, toolkit.quiesceTimeoutMs);
    agent.onAck = (s) => {
      if (s !== seq) return;
      clearTimeout(timer);
      agent.onAck = null;
      resolve();
    };
  });
  seq = agents.request(agent, AGENT_REQUEST.QUIESCE);
  vm.machine.kick();
  try {
    await acked;
  } catch (e) {
    // Withdraw the request so a late acknowledgement finds nothing to wait for.
    agents.request(agent, AGENT_REQUEST.NONE);
    throw e;
  }
  const tAck = performance.now();
  try {
    const r = await saveVmSnapshot(hypervisor, vm, store, ref, { meta: { ...meta, consistency: 'application' }, ...(opts.force ? { force: true } : {}) });
    return { vm: vm.name, ref, digest: r.digest, toolkit: toolkit.name, profile: agent.profile, consistency: 'application', quiesceMs: Math.round((tAck - t0) * 1000) / 1000, heldMs: Math.round((performance.now() - tAck) * 1000) / 1000, memoryBytes: r.memoryBytes };
  } finally {
    agents.request(agent, AGENT_REQUEST.THAW);
    vm.frozen = false;
    vm.machine.kick();
  }
}
