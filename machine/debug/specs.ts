/**
 * Breakpoint and watch specs as users type them (TUI prompt, CLI --break,
 * monitor requests), and their canonical text.
 *
 *   0xfff0 | lin 0xfff0 | lin:0xfff0      linear address (CS.base + RIP outside long mode)
 *   phys 0x100000 | p:0x100000            physical address
 *   post 0x33 | post:MEMTEST_PASS         POST code (number or name from firmware/post-codes.json)
 *   watch: 0x1000 16 | 0x1000+16          physical range (length default 8)
 */
import { describePostCode, hex2, postCodeTable } from '../platform/post-codes.js';
import { hex, parseAddress } from '../inspect/hex.js';

export type BreakpointSpec = { kind: 'linear'; address: bigint } | { kind: 'physical'; address: bigint } | { kind: 'post'; code: number };

export interface WatchSpec {
  address: bigint;
  length: number;
}

export class SpecError extends Error {
  override name = 'SpecError';
}

const KIND_WORDS: Record<string, BreakpointSpec['kind']> = { lin: 'linear', linear: 'linear', l: 'linear', phys: 'physical', physical: 'physical', p: 'physical', post: 'post' };

function postCode(text: string): number {
  const t = text.trim();
  if (/^(0x)?[0-9a-f]{1,2}$/i.test(t)) return Number.parseInt(t.replace(/^0x/i, ''), 16);
  const byName = [...postCodeTable().values()].find((c) => c.name.toLowerCase() === t.toLowerCase());
  if (byName) return byName.code;
  throw new SpecError(`'${text}' is not a POST code (use a byte like 0x33 or a name like MEMTEST_PASS)`);
}

export function parseBreakpointSpec(text: string): BreakpointSpec {
  const t = text.trim();
  const m = /^([a-z]+)\s*[:\s]\s*(.+)$/i.exec(t);
  const kind = m ? KIND_WORDS[m[1]!.toLowerCase()] : undefined;
  if (m && !kind) throw new SpecError(`unknown breakpoint kind '${m[1]}' (use lin, phys or post)`);
  const arg = m ? m[2]! : t;
  if (!arg) throw new SpecError('breakpoint needs an address or POST code');
  try {
    if (kind === 'post') return { kind: 'post', code: postCode(arg) };
    return { kind: kind ?? 'linear', address: parseAddress(arg) };
  } catch (e) {
    if (e instanceof SpecError) throw e;
    throw new SpecError((e as Error).message);
  }
}

export function formatBreakpointSpec(s: BreakpointSpec): string {
  if (s.kind === 'post') return `post ${hex2(s.code)} ${describePostCode(s.code).name}`;
  return `${s.kind === 'linear' ? 'lin' : 'phys'} ${hex(s.address)}`;
}

export function parseWatchSpec(text: string): WatchSpec {
  const t = text.trim().replace(/^watch\s*[:\s]\s*/i, '');
  const m = /^(\S+?)(?:\s*\+\s*|\s+)(\S+)$/.exec(t);
  try {
    const address = parseAddress(m ? m[1]! : t);
    const length = m ? Number(parseAddress(m[2]!)) : 8;
    if (length < 1 || length > 1 << 20) throw new SpecError(`watch length ${length}: expected 1 byte to 1 MiB`);
    return { address, length };
  } catch (e) {
    if (e instanceof SpecError) throw e;
    throw new SpecError(`${(e as Error).message} (watch: <address> [length] or <address>+<length>)`);
  }
}
