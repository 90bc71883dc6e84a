/**
 * Fault injection specs, spelled as on the CLI:
 *   ram:<addr>+<len>[:stuck|:flip]   a bad RAM range
 *   uart-dead                        COM1 absent / failing loopback
 *   cmos-checksum                    CMOS checksum error at power-on
 *   pit-stuck                        a PIT that never ticks
 */
import type { RamFaultSpec } from '../memory/faulty-ram.js';

export type FaultSpec =
  | { kind: 'ram'; base: number; length: number; mode: 'stuck' | 'flip'; text: string }
  | { kind: 'uart-dead'; text: string }
  | { kind: 'cmos-checksum'; text: string }
  | { kind: 'pit-stuck'; text: string };

export class FaultSpecError extends Error {
  override name = 'FaultSpecError';
}

const num = (s: string, what: string, spec: string): number => {
  const t = s.trim().toLowerCase();
  const m = /^(0x[0-9a-f]+|\d+)([kmg])?$/.exec(t);
  if (!m) throw new FaultSpecError(`--fault ${spec}: ${what} '${s}' is not a number (use 0x200000, 2097152 or 2M)`);
  const mul = m[2] === 'k' ? 1024 : m[2] === 'm' ? 1024 ** 2 : m[2] === 'g' ? 1024 ** 3 : 1;
  return Number(BigInt(m[1]!)) * mul;
};

export function parseFault(text: string): FaultSpec {
  const t = text.trim();
  if (t === 'uart-dead' || t === 'cmos-checksum' || t === 'pit-stuck') return { kind: t, text: t };
  if (t.startsWith('ram:')) {
    const [range, mode = 'stuck', ...rest] = t.slice(4).split(':');
    if (rest.length > 0 || (mode !== 'stuck' && mode !== 'flip')) throw new FaultSpecError(`--fault ${t}: expected ram:<addr>+<len>[:stuck|:flip]`);
    const plus = range!.indexOf('+');
    if (plus < 0) throw new FaultSpecError(`--fault ${t}: expected ram:<addr>+<len> (missing '+<len>')`);
    const base = num(range!.slice(0, plus), 'address', t);
    const length = num(range!.slice(plus + 1), 'length', t);
    if (length === 0) throw new FaultSpecError(`--fault ${t}: length must be > 0`);
    if (base % 4096 !== 0 || length % 4096 !== 0) throw new FaultSpecError(`--fault ${t}: address and length must be 4 KiB aligned`);
    return { kind: 'ram', base, length, mode, text: t };
  }
  throw new FaultSpecError(`unknown --fault '${t}': expected ram:<addr>+<len>, uart-dead, cmos-checksum or pit-stuck`);
}

export function ramFaults(faults: readonly FaultSpec[], seed: number): RamFaultSpec[] {
  return faults.flatMap((f) => (f.kind === 'ram' ? [{ base: f.base, length: f.length, mode: f.mode, seed }] : []));
}

export const hasFault = (faults: readonly FaultSpec[], kind: FaultSpec['kind']): boolean => faults.some((f) => f.kind === kind);

/** Parses sizes like 64M, 1G, 65536. */
export function parseSize(s: string, what = 'size'): number {
  const m = /^(\d+)([kmgKMG])?$/.exec(s.trim());
  if (!m) throw new FaultSpecError(`${what} '${s}' is not a size (use 64M, 1G or bytes)`);
  const mul = { k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[(m[2] ?? '').toLowerCase() as 'k' | 'm' | 'g'] ?? 1;
  return Number(m[1]) * mul;
}
