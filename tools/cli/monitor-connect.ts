/** Connects a CLI command to a running machine's monitor socket, with an error that says what to start. */
import { MonitorClient } from '../../tui/monitor-client.js';
import { UsageError } from './args.js';

export async function connectMonitor(command: string, socket: string | undefined): Promise<MonitorClient> {
  if (socket === undefined) throw new UsageError(`${command}: needs --monitor SOCK, the socket of a running 'firmament run --monitor SOCK'`);
  return MonitorClient.connect(socket).catch((e: Error) => {
    throw new UsageError(`${command}: no monitor answers at ${socket} (${e.message.replace(/^--attach [^:]*: /, '')})`);
  });
}

/** "10s", "500ms", "2m" or a number of milliseconds. */
export function parseDurationMs(text: string, option: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(text.trim());
  const ms = m ? Number(m[1]) * (m[2] === 's' ? 1000 : m[2] === 'm' ? 60_000 : 1) : NaN;
  if (!Number.isInteger(ms) || ms < 1 || ms > 3_600_000) throw new UsageError(`${option} ${text}: expected a guest-time duration such as 10s, 500ms or 2m (1 ms to 1 h)`);
  return ms;
}
