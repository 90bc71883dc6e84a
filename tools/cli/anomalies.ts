/**
 * `firmament anomalies`: the management view of the security service's
 * notifications, from a running machine's monitor; `--follow` keeps
 * printing them as they come, `--notify URL` POSTs each one as JSON.
 */
import { parseArgs } from 'node:util';
import { UsageError, toJson } from './args.js';
import { connectMonitor } from './monitor-connect.js';
import type { AnomalyNotice } from '../../machine/debug/protocol.js';

export const ANOMALIES_HELP = `firmament anomalies --monitor SOCK [--follow] [--json] [--notify URL] [--since ID]

  Lists the anomalies the security service raised for the VMs of a running
  'firmament run --monitor SOCK' (one per episode; docs/security.md).
  --follow      keep listening and print each new anomaly as it is raised (until the machine ends)
  --json        one JSON document ({"anomalies": [...]}); with --follow one JSON object per line
  --notify URL  also POST each anomaly as JSON to URL (http or https; a failed POST is reported, not fatal)
  --since ID    only anomalies with a larger id`;

/** One line for a person: when, which VM, how bad, what, where. */
export function anomalyLine(a: AnomalyNotice): string {
  return `#${a.id} ${a.atMs.toFixed(1).padStart(10)} ms  ${a.vm}  ${a.severity.toUpperCase().padEnd(6)} ${a.description}  [${a.metric}; window ${a.window.fromMs.toFixed(0)}-${a.window.toMs.toFixed(0)} ms; rip ${a.rip}]`;
}

const NOTIFY_TIMEOUT_MS = 5000;

export async function postAnomaly(url: string, a: AnomalyNotice): Promise<void> {
  const r = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(a), signal: AbortSignal.timeout(NOTIFY_TIMEOUT_MS) });
  if (!r.ok) throw new Error(`HTTP ${r.status} ${r.statusText}`);
}

export async function anomaliesCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { monitor: { type: 'string' }, follow: { type: 'boolean' }, json: { type: 'boolean' }, notify: { type: 'string' }, since: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
  });
  if (values.help) {
    console.log(ANOMALIES_HELP);
    return 0;
  }
  if (positionals.length > 0) throw new UsageError(`anomalies: unexpected argument '${positionals[0]}'`);
  const since = values.since === undefined ? 0 : Number(values.since);
  if (!Number.isSafeInteger(since) || since < 0) throw new UsageError(`--since ${values.since}: expected an anomaly id (a whole number >= 0)`);
  const notify = values.notify;
  if (notify !== undefined) {
    let u: URL;
    try {
      u = new URL(notify);
    } catch {
      throw new UsageError(`--notify ${notify}: not a URL (expected http://HOST[:PORT]/PATH)`);
    }
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new UsageError(`--notify ${notify}: expected an http or https URL`);
  }
  const client = await connectMonitor('anomalies', values.monitor);
  const seen = new Set<number>();
  const posts: Promise<void>[] = [];
  const show = (a: AnomalyNotice, follow: boolean): void => {
    if (seen.has(a.id) || a.id <= since) return;
    seen.add(a.id);
    if (follow) process.stdout.write(values.json ? `${JSON.stringify(a)}\n` : `${anomalyLine(a)}\n`);
    if (notify !== undefined) posts.push(postAnomaly(notify, a).catch((e: Error) => void process.stderr.write(`firmament: --notify ${notify}: anomaly #${a.id}: ${e.message}\n`)));
  };
  try {
    if (values.follow) {
      const ended = new Promise<void>((resolve) => client.onClose(() => resolve()));
      // Subscribe before listing, so nothing raised in between is lost (ids de-duplicate).
      client.onEvent((ev) => {
        if (ev.event === 'anomaly') show(ev.data, true);
      });
      const { anomalies } = await client.request('anomalies', { since });
      for (const a of anomalies) show(a, true);
      await ended;
    } else {
      const { anomalies } = await client.request('anomalies', { since });
      for (const a of anomalies) show(a, false);
      if (values.json) console.log(toJson({ anomalies }));
      else console.log(anomalies.length === 0 ? 'no anomalies' : anomalies.map(anomalyLine).join('\n'));
    }
    await Promise.all(posts);
  } finally {
    client.close();
  }
  return 0;
}
