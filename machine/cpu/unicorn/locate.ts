/**
 * Finds libunicorn >= 2.1, in the order the README documents:
 * FIRMAMENT_UNICORN, then a system libunicorn.so.2 that reports >= 2.1,
 * then the copy `npm install` unpacked into .cache/unicorn.
 */
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const PROJECT_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
export const CACHE_DIR = join(PROJECT_ROOT, '.cache');
export const CACHED_UNICORN = join(CACHE_DIR, 'unicorn/usr/lib/x86_64-linux-gnu/libunicorn.so.2');
export const NATIVE_HELPER = join(CACHE_DIR, 'native/libfmcpu.so');
export const SYSTEM_UNICORN_PATHS = ['/usr/lib/x86_64-linux-gnu/libunicorn.so.2', '/usr/local/lib/libunicorn.so.2', '/usr/lib/libunicorn.so.2'];

export const MIN_UNICORN = { major: 2, minor: 1 };

export interface UnicornVersion {
  major: number;
  minor: number;
  patch: number;
  raw: number;
}

export function decodeVersion(raw: number): UnicornVersion {
  return { major: (raw >>> 24) & 0xff, minor: (raw >>> 16) & 0xff, patch: (raw >>> 8) & 0xff, raw };
}

export function versionOk(v: UnicornVersion): boolean {
  return v.major > MIN_UNICORN.major || (v.major === MIN_UNICORN.major && v.minor >= MIN_UNICORN.minor);
}

export function formatVersion(v: UnicornVersion): string {
  return `${v.major}.${v.minor}.${v.patch}`;
}

/** Candidate paths in priority order; the loader checks each one's version. */
export function unicornCandidates(env: NodeJS.ProcessEnv = process.env): { path: string; source: string }[] {
  const out: { path: string; source: string }[] = [];
  const fromEnv = env['FIRMAMENT_UNICORN'];
  if (fromEnv) return [{ path: fromEnv, source: 'FIRMAMENT_UNICORN' }];
  for (const p of SYSTEM_UNICORN_PATHS) if (existsSync(p)) out.push({ path: p, source: 'system' });
  if (existsSync(CACHED_UNICORN)) out.push({ path: CACHED_UNICORN, source: 'project cache (.cache/unicorn)' });
  return out;
}
