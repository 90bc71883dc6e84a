/** `firmament backup`: an application-consistent snapshot of a running VM, through its monitor (docs/functions.md). */
import { parseArgs } from 'node:util';
import { toJson, UsageError } from './args.js';
import { MonitorClient } from '../../tui/monitor-client.js';

export const BACKUP_HELP = `firmament backup --monitor SOCK --to REF [--vm NAME] [--force] [--json]
  Quiesces the VM through its guest agent when the toolkit for its declared backup profile says so
  (vmm/backup/toolkits/*.json), snapshots it into the store of the 'firmament run --monitor SOCK'
  that runs it, then thaws it; a VM that declared no profile gets a crash-consistent snapshot.`;

export async function backupCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { monitor: { type: 'string' }, to: { type: 'string' }, vm: { type: 'string' }, force: { type: 'boolean' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } } });
  if (values.help) {
    console.log(BACKUP_HELP);
    return 0;
  }
  if (!values.monitor) throw new UsageError('backup: needs --monitor SOCK, the socket of a running `firmament run --monitor SOCK`');
  if (!values.to) throw new UsageError('backup: needs --to REF, the snapshot name to store the backup under');
  const client = await MonitorClient.connect(values.monitor).catch((e: Error) => {
    throw new UsageError(`backup: no monitor answers at ${values.monitor} (${e.message.replace(/^--attach [^:]*: /, '')})`);
  });
  try {
    const r = await client.request('backup', { to: values.to, ...(values.vm !== undefined ? { vm: values.vm } : {}), ...(values.force ? { force: true } : {}) });
    console.log(values.json ? toJson(r) : `${r.vm} -> ${r.ref} (${r.digest.slice(0, 19)}…): ${r.consistency}-consistent with toolkit ${r.toolkit}${r.profile ? ` (profile ${r.profile})` : ''}; quiesce acknowledged in ${r.quiesceMs} ms, held ${r.heldMs} ms; ${(r.memoryBytes / 1048576).toFixed(1)} MiB`);
  } finally {
    client.close();
  }
  return 0;
}
