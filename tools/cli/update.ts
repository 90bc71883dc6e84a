/** `firmament update --monitor SOCK [--to PATH]`: live update of a running `run --shared-ram` (docs/live-update.md). */
import { parseArgs } from 'node:util';
import { MonitorClient } from '../../tui/monitor-client.js';
import { parseTimeoutMs, toJson, UsageError } from './args.js';
import { cliOutput } from './stdout.js';

export const UPDATE_HELP = `firmament update --monitor SOCK [--to PATH] [--timeout S] [--json]
  Live update: a new process, PATH's Firmament (another checkout or installed copy; default the
  code on disk here), takes over the VMs of the running 'firmament run --shared-ram --monitor SOCK'
  in place. Guest memory stays where it is (a shared-memory file); the VMs pause only while the
  state record is handed over. If the new version refuses the state, dies or does not answer within
  --timeout (default 10 s), every VM resumes in the old process. The new process keeps the monitor
  socket and COM1 output. Prints the blackout per VM, or why it rolled back (status 1).`;

export async function updateCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args: argv, allowPositionals: true, options: { monitor: { type: 'string' }, to: { type: 'string' }, timeout: { type: 'string' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } } });
  if (values.help) {
    console.log(UPDATE_HELP);
    return 0;
  }
  if (positionals.length > 0) throw new UsageError(`update: unexpected argument '${positionals[0]}'`);
  if (values.monitor === undefined) throw new UsageError("update: needs --monitor SOCK, the socket of a running 'firmament run --shared-ram'");
  const timeoutMs = parseTimeoutMs(values.timeout);
  const client = await MonitorClient.connect(values.monitor).catch((e: Error) => {
    throw new UsageError(`update: no monitor answers at ${values.monitor} (${e.message.replace(/^--attach [^:]*: /, '')})`);
  });
  const { out, err } = cliOutput();
  try {
    const r = await client.request('update', { ...(values.to !== undefined ? { to: values.to } : {}), ...(timeoutMs !== undefined ? { timeoutMs } : {}) });
    if (values.json) out.write(toJson(r) + '\n');
    else if (r.ok) {
      out.write(`updated: pid ${r.from.pid} -> pid ${r.to.pid} (${r.to.path}), hypervisor version ${r.to.hcVersion}; prepared in ${r.prepareMs.toFixed(0)} ms, state ${r.stateBytes} bytes\n`);
      for (const b of r.blackout) out.write(`  ${b.vm}: blackout ${b.blackoutMs.toFixed(3)} ms (old side ${b.oldSideMs.toFixed(3)} ms, new side ${b.newSideMs.toFixed(3)} ms)\n`);
    } else err.write(`firmament: update rolled back (${r.phase}, VMs paused ${r.pausedMs.toFixed(1)} ms): ${r.reason}\n`);
    return r.ok ? 0 : 1;
  } finally {
    client.close();
  }
}
