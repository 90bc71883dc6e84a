/** `firmament tui`: the terminal UI over a machine started here, or attached to one over its monitor socket. */
import { parseArgs } from 'node:util';
import { TuiApp } from '../../tui/app.js';
import { localTarget, remoteTarget } from '../../tui/target.js';
import { MonitorClient } from '../../tui/monitor-client.js';
import { UsageError } from './args.js';
import { LAUNCH_HELP, LAUNCH_OPTION_SPEC, launchMachine } from './launch.js';
import { claimSocketPath, startMonitorServer, type MonitorServer } from './monitor-server.js';
import { restoreMachine } from './restore.js';

export const TUI_HELP = `firmament tui [options]
  Terminal UI: boot timeline, consoles, CPU, disassembly, memory, page walk, vCPUs and
  events on one screen, live; pause, step, breakpoints, watches, run to mode switch.
  Press ? inside for every key (docs/tui.md).

${LAUNCH_HELP}
  --monitor SOCKET    also serve the monitor protocol on SOCKET (docs/monitor.md)
  --attach SOCKET     attach to a machine started with 'boot --monitor' or 'run --monitor'
                      instead of starting one (q detaches; the machine keeps running)
  --restore FILE      open a snapshot written by 'boot|run --snapshot-on-exit' (a failing
                      'firmament test' run keeps one): a machine of the same shape, paused on it`;

export async function tuiCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { ...LAUNCH_OPTION_SPEC, attach: { type: 'string' }, restore: { type: 'string' }, monitor: { type: 'string' }, help: { type: 'boolean', short: 'h' } }, strict: true });
  if (values.help) {
    console.log(TUI_HELP);
    return 0;
  }
  if (!process.stdout.isTTY || !process.stdin.isTTY) throw new UsageError('tui needs a terminal (stdin and stdout must be a TTY); use `firmament inspect --json` for scripts');
  if (values.attach !== undefined) return attach(values.attach);
  if (values.restore !== undefined && (values.kernel !== undefined || values.guest !== undefined || values.fault !== undefined)) throw new UsageError('--restore builds the machine the snapshot describes; leave out --kernel, --guest and --fault');

  if (values.monitor !== undefined) await claimSocketPath(values.monitor);
  // The machine runs in the background from here on; its exit leaves the TUI up on the final state.
  const launched = values.restore !== undefined ? restoreMachine(values.restore) : await launchMachine(values);
  let server: MonitorServer | null = null;
  try {
    if (values.monitor !== undefined) server = await startMonitorServer(launched.session, values.monitor);
    await new Promise<void>((resolve) => {
      const app = new TuiApp({ target: localTarget(launched.session, launched.label), onQuit: resolve, initialCpu: launched.initialCpu });
      app.ui.consoleId = launched.initialConsole();
      app.start();
    });
  } finally {
    await server?.close();
    await launched.close();
  }
  return 0;
}

async function attach(path: string): Promise<number> {
  let client: MonitorClient;
  try {
    client = await MonitorClient.connect(path);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  const hello = await client.request('hello', {});
  const target = remoteTarget(client, `${hello.machine.label} via ${path}`);
  await new Promise<void>((resolve) => {
    const app = new TuiApp({ target, onQuit: resolve });
    app.start();
  });
  client.close();
  return 0;
}
