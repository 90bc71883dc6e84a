/** Shared option parsing for the CLI commands: clear errors naming the option. */
import { parseFault, parseSize, type FaultSpec } from '../../machine/platform/faults.js';

export class UsageError extends Error {
  override name = 'UsageError';
}

export interface MachineOptions {
  memBytes: number;
  cpus: number;
  faults: FaultSpec[];
  timeoutMs: number | undefined;
  seed: number;
  json: boolean;
  pace: 'realtime' | 'virtual';
  timerSlackMs: number | undefined;
}

/** --timer-slack MS: host wake-ups of an idle realtime machine are rounded up to this (0 = every timer). */
export function parseTimerSlack(v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const ms = Number(v);
  if (!Number.isFinite(ms) || ms < 0 || ms > 100) throw new UsageError(`--timer-slack ${v}: expected milliseconds from 0 to 100`);
  return ms;
}

export function machineOptions(values: Record<string, string | boolean | (string | boolean)[] | undefined>): MachineOptions {
  const str = (k: string): string | undefined => {
    const v = values[k];
    return typeof v === 'string' ? v : undefined;
  };
  const memBytes = parseSize(str('mem') ?? '64M', '--mem');
  const cpus = Number(str('cpus') ?? '1');
  if (!Number.isInteger(cpus) || cpus < 1 || cpus > 64) throw new UsageError(`--cpus ${str('cpus')}: expected a whole number from 1 to 64`);
  const faultsRaw = values['fault'];
  const faults = (Array.isArray(faultsRaw) ? faultsRaw : faultsRaw === undefined ? [] : [faultsRaw]).map((f) => parseFault(String(f)));
  const t = str('timeout');
  const timeout = t === undefined ? undefined : Number(t);
  if (timeout !== undefined && (!Number.isFinite(timeout) || timeout <= 0)) throw new UsageError(`--timeout ${t}: expected seconds > 0`);
  const seed = Number(str('seed') ?? '0');
  if (!Number.isInteger(seed)) throw new UsageError(`--seed ${str('seed')}: expected an integer`);
  const pace = str('clock') ?? 'realtime';
  if (pace !== 'realtime' && pace !== 'virtual') throw new UsageError(`--clock ${pace}: expected realtime or virtual`);
  return { memBytes, cpus, faults, timeoutMs: timeout === undefined ? undefined : timeout * 1000, seed, json: values['json'] === true, pace, timerSlackMs: parseTimerSlack(str('timer-slack')) };
}

export const MACHINE_OPTION_SPEC = {
  mem: { type: 'string' },
  cpus: { type: 'string' },
  fault: { type: 'string', multiple: true },
  timeout: { type: 'string' },
  seed: { type: 'string' },
  clock: { type: 'string' },
  'timer-slack': { type: 'string' },
  json: { type: 'boolean' },
} as const;

/** JSON with BigInt values written as hex strings. */
export function toJson(value: unknown): string {
  return JSON.stringify(value, (_k, v: unknown) => (typeof v === 'bigint' ? `0x${v.toString(16)}` : v), 2);
}
