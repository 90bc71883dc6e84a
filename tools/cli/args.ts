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

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;
/** The most RAM one emulated machine can have: it is one host buffer, and Node caps those at 4 GiB. */
export const MAX_MACHINE_RAM = 4 * GiB;
/** The most RAM one guest can have: its RAM plus the hypervisor's own frames fit in one machine. */
export const MAX_GUEST_RAM = 2 * GiB;
const MIN_RAM = 2 * MiB;

const sizeText = (n: number): string => (n % GiB === 0 ? `${n / GiB}G` : n % MiB === 0 ? `${n / MiB}M` : `${n / KiB}K`);

/** A RAM size option (--mem, --guest-mem): a size from 2M to `max`, a multiple of 64K. */
export function parseMemSize(text: string, option: string, max: number): number {
  let n: number;
  try {
    n = parseSize(text, option);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  if (n < MIN_RAM || n > max || n % (64 * KiB) !== 0) throw new UsageError(`${option} ${text}: expected a RAM size from ${sizeText(MIN_RAM)} to ${sizeText(max)}, a multiple of 64K`);
  return n;
}

/** A count option (--cpus, --vcpus): a whole number in [min, max]. */
export function parseCount(text: string | undefined, option: string, fallback: number, min = 1, max = 64): number {
  if (text === undefined) return fallback;
  const n = /^\s*\d+\s*$/.test(text) ? Number(text) : NaN;
  if (!Number.isInteger(n) || n < min || n > max) throw new UsageError(`${option} ${text}: expected a whole number from ${min} to ${max}`);
  return n;
}

/** --timeout S: seconds of wall time, > 0 (at most a day: setTimeout cannot wait much longer). */
export function parseTimeoutMs(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const s = /^\s*(\d+(\.\d*)?|\.\d+)\s*$/.test(text) ? Number(text) : NaN;
  if (!Number.isFinite(s) || s <= 0 || s > 86400) throw new UsageError(`--timeout ${text}: expected seconds, more than 0 and at most 86400`);
  return s * 1000;
}

export function machineOptions(values: Record<string, string | boolean | (string | boolean)[] | undefined>): MachineOptions {
  const str = (k: string): string | undefined => {
    const v = values[k];
    return typeof v === 'string' ? v : undefined;
  };
  const memBytes = parseMemSize(str('mem') ?? '64M', '--mem', MAX_MACHINE_RAM);
  const cpus = parseCount(str('cpus'), '--cpus', 1);
  const faultsRaw = values['fault'];
  const faults = (Array.isArray(faultsRaw) ? faultsRaw : faultsRaw === undefined ? [] : [faultsRaw]).map((f) => parseFault(String(f)));
  const timeoutMs = parseTimeoutMs(str('timeout'));
  const seed = Number(str('seed') ?? '0');
  if (!Number.isInteger(seed)) throw new UsageError(`--seed ${str('seed')}: expected an integer`);
  const pace = str('clock') ?? 'realtime';
  if (pace !== 'realtime' && pace !== 'virtual') throw new UsageError(`--clock ${pace}: expected realtime or virtual`);
  return { memBytes, cpus, faults, timeoutMs, seed, json: values['json'] === true, pace, timerSlackMs: parseTimerSlack(str('timer-slack')) };
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
