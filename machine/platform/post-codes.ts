/** The firmware's POST code table (single source: firmware/post-codes.json). */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PROJECT_ROOT } from '../cpu/unicorn/locate.js';

export type PostSeverity = 'progress' | 'error' | 'fatal';

export interface PostCodeInfo {
  code: number;
  name: string;
  severity: PostSeverity;
  description: string;
}

let table: Map<number, PostCodeInfo> | undefined;

export function postCodeTable(): Map<number, PostCodeInfo> {
  if (table) return table;
  const raw = JSON.parse(readFileSync(join(PROJECT_ROOT, 'firmware/post-codes.json'), 'utf8')) as { codes: { code: string; name: string; severity: PostSeverity; description: string }[] };
  table = new Map(raw.codes.map((c) => [Number(c.code), { code: Number(c.code), name: c.name, severity: c.severity, description: c.description }]));
  return table;
}

export function describePostCode(code: number): PostCodeInfo {
  return postCodeTable().get(code) ?? { code, name: 'UNKNOWN', severity: 'progress', description: 'not in firmware/post-codes.json' };
}

export const hex2 = (n: number): string => `0x${n.toString(16).toUpperCase().padStart(2, '0')}`;
