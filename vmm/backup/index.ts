/** The backup service (docs/functions.md, "Backup"): toolkits, the agent mailbox, backupVm. */
import type { Hypervisor } from '../../hypervisor/hypervisor.js';
import type { Commands } from '../../machine/debug/protocol.js';
import { SnapshotStore } from '../snapshot/index.js';
import { BackupAgents } from './agent.js';
import { backupVm } from './backup.js';
import { ToolkitRegistry } from './toolkits.js';

export { BackupAgents, AGENT_REQUEST, writeAgentRequest } from './agent.js';
export { backupVm, BackupError, type BackupResult } from './backup.js';
export { ToolkitRegistry, ToolkitError, parseToolkit, DEFAULT_TOOLKITS_DIR, type Toolkit } from './toolkits.js';

/**
 * The monitor's `backup` for a machine's VMs: hooks the agent hypercalls on
 * every VM it has now (call before the guests run, so their registration is
 * seen) and answers `backup {to, vm?, force?}`.
 */
export function backupCommand(hypervisor: Hypervisor, storeDir: string, toolkitsDir?: string): (args: Commands['backup']['args']) => Promise<Commands['backup']['result']> {
  const agents = new BackupAgents(hypervisor);
  agents.attachAll();
  const toolkits = ToolkitRegistry.load(toolkitsDir);
  return async (args) => {
    const vm = args.vm === undefined ? hypervisor.vms[0] : hypervisor.vms.find((v) => v.name === args.vm);
    if (!vm) throw new Error(args.vm === undefined ? 'no VM on this machine' : `no VM named '${args.vm}' (VMs: ${hypervisor.vms.map((v) => v.name).join(', ') || 'none'})`);
    return backupVm(hypervisor, agents, toolkits, vm, SnapshotStore.open(storeDir), args.to, args.force ? { force: true } : {});
  };
}
