/**
 * `firmament inspect`: boot a machine to a stop point (a breakpoint such as
 * post:0x5F, or the machine's exit), then print inspection views as JSON:
 * the same views the TUI and the monitor show. `--walk VADDR` gives the
 * page walk (for a guest vCPU: GVA -> GPA; `firmament translate` adds the EPT).
 */
import { parseArgs } from 'node:util';
import type { StopInfo } from '../../machine/debug/debugger.js';
import { SNAPSHOT_PARTS, type SnapshotPart } from '../../machine/inspect/snapshot.js';
import { parseAddress } from '../../machine/inspect/hex.js';
import { toJson, UsageError } from './args.js';
import { LAUNCH_HELP, LAUNCH_OPTION_SPEC, launchMachine, type LaunchedMachine } from './launch.js';

const STOP_POINT_HELP = `  Stop point: the first --break that hits (e.g. --break post:0x5F), else the machine's exit.
  --clock defaults to virtual here (deterministic and fast); --timeout defaults to 60 s.
  --cpu N             CPU to inspect (machine CPUs first, then guest vCPUs; default: as the TUI)`;

export const INSPECT_HELP = `firmament inspect [options]
  Runs the machine to a stop point and prints one JSON document {stop, status, cpu, disassembly,
  memory, pageWalk, timeline, events, consoles, vcpus} (docs/monitor.md describes each view).

${LAUNCH_HELP}
${STOP_POINT_HELP}
  --memory SPEC       memory view: [p:|v:]0xADDR[+LEN] (default p:0+256)
  --walk VADDR        include the page walk of VADDR
  --parts LIST        comma-separated subset of: ${SNAPSHOT_PARTS.join(',')}`;

const OPTIONS = { ...LAUNCH_OPTION_SPEC, cpu: { type: 'string' }, help: { type: 'boolean', short: 'h' } } as const;

/** Runs until the first breakpoint/watch/mode-switch stop or the exit; the machine is then paused or exited. */
async function runToStopPoint(l: LaunchedMachine): Promise<StopInfo | null> {
  if (l.machine.paused) {
    // A stop found while starting is reported on the next turn of the event loop.
    await new Promise((r) => setImmediate(r));
    return l.session.debugger.lastStop;
  }
  const stopped = new Promise<StopInfo>((resolve) => {
    const off = l.session.debugger.onStop((s) => {
      if (s.reason === 'pause' || s.reason === 'step') return;
      off();
      resolve(s);
    });
  });
  const first = await Promise.race([stopped, l.finished.then(() => null)]);
  // An exit also produces a stop: let it arrive so the report names it.
  return first ?? (await Promise.race([stopped, new Promise<null>((r) => setTimeout(() => r(null), 50))]));
}

function withDefaults(values: Record<string, unknown>): Record<string, string | boolean | (string | boolean)[] | undefined> {
  const v = { ...values } as Record<string, string | boolean | (string | boolean)[] | undefined>;
  v['clock'] ??= 'virtual';
  v['timeout'] ??= '60';
  return v;
}

function cpuOption(values: Record<string, unknown>, l: LaunchedMachine): number {
  if (typeof values['cpu'] !== 'string') return l.initialCpu;
  const n = Number(values['cpu']);
  if (!Number.isInteger(n) || n < 0) throw new UsageError(`--cpu ${values['cpu']}: expected a CPU number`);
  return n;
}

function memorySpec(text: string | undefined): { space: 'physical' | 'virtual'; address: string; length: number } {
  if (text === undefined) return { space: 'physical', address: '0x0', length: 256 };
  const m = /^(?:([pv]):)?([^+]+)(?:\+(.+))?$/i.exec(text.trim());
  if (!m) throw new UsageError(`--memory ${text}: expected [p:|v:]0xADDR[+LEN]`);
  try {
    return memorySpecParts(m);
  } catch (e) {
    throw new UsageError(`--memory ${text}: ${(e as Error).message} (expected [p:|v:]0xADDR[+LEN])`);
  }
}

function memorySpecParts(m: RegExpExecArray): { space: 'physical' | 'virtual'; address: string; length: number } {
  return { space: m[1]?.toLowerCase() === 'v' ? 'virtual' : 'physical', address: `0x${parseAddress(m[2]!).toString(16)}`, length: m[3] ? Number(parseAddress(m[3])) : 256 };
}

function walkAddress(text: string): string {
  try {
    return `0x${parseAddress(text).toString(16)}`;
  } catch (e) {
    throw new UsageError(`--walk ${text}: ${(e as Error).message}`);
  }
}

export async function inspectCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { ...OPTIONS, memory: { type: 'string' }, walk: { type: 'string' }, parts: { type: 'string' } }, strict: true });
  if (values.help) {
    console.log(INSPECT_HELP);
    return 0;
  }
  const parts = values.parts?.split(',').map((p) => p.trim()) as SnapshotPart[] | undefined;
  for (const p of parts ?? []) if (!SNAPSHOT_PARTS.includes(p)) throw new UsageError(`--parts: unknown view '${p}' (views: ${SNAPSHOT_PARTS.join(', ')})`);
  const memory = memorySpec(values.memory);
  const walk = values.walk !== undefined ? walkAddress(values.walk) : null;
  const v = withDefaults(values);
  const l = await launchMachine(v);
  try {
    const stop = await runToStopPoint(l);
    let snapshot;
    try {
      snapshot = l.session.call('snapshot', { cpu: cpuOption(values, l), ...(parts ? { parts } : {}), memory, pageWalk: walk ? { address: walk } : null });
    } catch (e) {
      // The request is checked against the monitor protocol's schema: a value out of its range is the user's.
      throw new UsageError(`inspect: ${(e as Error).message}`);
    }
    process.stdout.write(toJson({ stop, ...snapshot }) + '\n');
    return 0;
  } finally {
    await l.close();
  }
}
