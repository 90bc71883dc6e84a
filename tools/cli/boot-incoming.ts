/**
 * `firmament boot --incoming tcp:HOST:PORT` (QEMU's -incoming on the full boot
 * path): firmware, OS and the handoff run as in any boot; then the hypervisor,
 * with no guests of its own, waits for one migrated VM with the same
 * destination code as `run --incoming` (vmm/migration/destination.ts) and
 * runs it. The machine ends when that VM stops; a refused migration ends it
 * with status 2 (everything the VM held is freed first).
 */
import type { Hypervisor } from '../../hypervisor/hypervisor.js';
import type { MachineExit } from '../../machine/platform/pc.js';
import { parseTcpUri } from '../../vmm/migration/channel.js';
import type { IncomingPopulate, IncomingReport } from '../../vmm/migration/destination.js';
import { UsageError } from './args.js';

export interface BootIncoming {
  at: { host: string; port: number };
  populate: IncomingPopulate;
}

/** Checks `--incoming` and `--populate` of `boot` before the machine powers on. */
export function parseBootIncoming(uri: string | undefined, populate: string | undefined, guests: number): BootIncoming | null {
  if (uri === undefined) {
    if (populate !== undefined) throw new UsageError('--populate needs --incoming');
    return null;
  }
  if (guests > 0) throw new UsageError('--incoming: the machine waits for a migrated VM; it takes no --guest');
  let at: { host: string; port: number };
  try {
    at = parseTcpUri(uri);
  } catch (e) {
    throw new UsageError(`--incoming: ${(e as Error).message}`);
  }
  const mode = populate ?? 'prepopulate';
  if (mode !== 'prepopulate' && mode !== 'lazy') throw new UsageError(`--populate ${mode}: with --incoming, expected prepopulate or lazy`);
  return { at, populate: mode };
}

export interface IncomingListeners {
  /** The port is open (port 0 picks one). */
  onListening(port: number): void;
  /** The VM runs here; its console from now on. */
  onVm(name: string, report: IncomingReport): void;
  onSerial(name: string, text: string): void;
}

/**
 * Called at the handoff: the machine keeps running with no VMs (idle, asleep
 * until the VM arrives), listens, and takes the VM. The returned promise
 * settles when the listener is open or failed to open.
 */
export async function waitForIncomingVm(hv: Hypervisor, incoming: BootIncoming, on: IncomingListeners): Promise<void> {
  const m = hv.machine;
  const fail = (what: string): void => m.finish({ reason: 'error', code: 2, detail: what, atNs: m.now() });
  // Without VMs the run loop would call the machine dead; it sleeps until a kick instead (no busy wait).
  m.serving = true;
  let listening: Awaited<ReturnType<typeof import('../../vmm/migration/destination.js').listenIncoming>>;
  try {
    // The migration code loads only for a boot that waits for one (start-up of plain boots).
    const { listenIncoming } = await import('../../vmm/migration/destination.js');
    listening = await listenIncoming(hv, incoming.at, { populate: incoming.populate });
  } catch (e) {
    fail(`--incoming tcp:${incoming.at.host}:${incoming.at.port}: ${(e as Error).message}`);
    return;
  }
  on.onListening(listening.port);
  listening.result.then(
    ({ vm, report }) => {
      m.serving = false;
      vm.onSerial = (t) => on.onSerial(vm.name, t);
      on.onVm(vm.name, report);
      hv.onAllStopped = () => {
        const e = vm.exit!;
        m.finish({ reason: e.reason === 'stopped' ? 'stopped' : e.reason, code: e.code, ...(e.detail ? { detail: e.detail } : {}), atNs: e.atNs ?? m.now() } as MachineExit);
      };
      // The VM may have stopped before the hook was set (a guest that exits at once).
      if (vm.state === 'stopped') hv.onAllStopped();
    },
    (e: Error) => fail(e.message),
  );
}
