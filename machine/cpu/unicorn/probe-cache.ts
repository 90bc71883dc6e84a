/**
 * Results of the start-up self-tests against the Unicorn build (context-blob offsets, where
 * CPUState is, SVM fields, which native paths work), kept in .cache/probes/ and keyed by the
 * library's GNU build ID. The probes open seven engines and fork a child per CPUState candidate:
 * ~100-200 ms of every start. The build ID changes with any rebuild of the library, so a cached
 * result is never applied to a build it was not measured on; results are still shape-checked.
 * Only successes are stored: a probe that failed (say, fork refused under load) runs again.
 * FIRMAMENT_PROBE_CACHE=0 turns the cache off (every probe runs, nothing is written);
 * FIRMAMENT_PROBE_CACHE_DIR puts it elsewhere (default .cache/probes).
 */
import { closeSync, mkdirSync, openSync, readFileSync, readSync, renameSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { dirname, join } from 'node:path';
import { CACHE_DIR } from './locate.js';
import { loadUnicorn } from './binding.js';

/** Bump when a probe's result changes meaning or shape: old files are then ignored. */
const FORMAT = 1;

export const probeCacheDir = (env: NodeJS.ProcessEnv = process.env): string => env['FIRMAMENT_PROBE_CACHE_DIR'] || join(CACHE_DIR, 'probes');

type Results = Record<string, unknown>;

interface CacheFile {
  format: number;
  library: string;
  buildId: string;
  results: Results;
}

let state: { file: string; library: string; buildId: string; results: Results } | null | undefined;

export function probeCacheEnabled(env: NodeJS.ProcessEnv = process.env): boolean {
  return env['FIRMAMENT_PROBE_CACHE'] !== '0';
}

/**
 * The cached result of probe `name` for the loaded library, if it passes `valid`; otherwise runs
 * `probe` and stores its result when `keep` says it is a success.
 */
export function cachedProbe<T>(name: string, valid: (v: unknown) => v is T, probe: () => T, keep: (v: T) => boolean = () => true): T {
  const cache = open();
  const hit = cache?.results[name];
  if (hit !== undefined && valid(hit)) return hit;
  const result = probe();
  if (cache && keep(result)) {
    cache.results[name] = result;
    save(cache);
  }
  return result;
}

/** Bytes produced by a probe engine (e.g. the power-on context), stored as base64; `length` checks them. */
export function cachedBytes(name: string, length: number, produce: () => Uint8Array): Uint8Array {
  const isBlob = (v: unknown): v is string => typeof v === 'string' && Buffer.byteLength(v, 'base64') === length;
  const b64 = cachedProbe(name, isBlob, () => Buffer.from(produce()).toString('base64'), (v) => isBlob(v));
  const out = new Uint8Array(length);
  out.set(Buffer.from(b64, 'base64').subarray(0, length));
  return out;
}

function open(): typeof state {
  if (!probeCacheEnabled()) return null;
  if (state !== undefined) return state;
  state = null;
  try {
    const library = loadUnicorn().path;
    const buildId = libraryBuildId(library);
    const file = join(probeCacheDir(), `unicorn-${buildId}.json`);
    let results: Results = {};
    try {
      const parsed = JSON.parse(readFileSync(file, 'utf8')) as Partial<CacheFile>;
      if (parsed.format === FORMAT && parsed.buildId === buildId && parsed.results && typeof parsed.results === 'object') results = parsed.results;
    } catch {
      // none yet, or unreadable: probe again and rewrite it
    }
    state = { file, library, buildId, results };
  } catch {
    // The library cannot be identified: probe every time (the probes report load errors themselves).
  }
  return state;
}

function save(cache: NonNullable<typeof state>): void {
  const body: CacheFile = { format: FORMAT, library: cache.library, buildId: cache.buildId, results: cache.results };
  const tmp = `${cache.file}.${process.pid}.tmp`;
  try {
    mkdirSync(dirname(cache.file), { recursive: true });
    writeFileSync(tmp, JSON.stringify(body, null, 1) + '\n');
    renameSync(tmp, cache.file); // readers see the old file or the new one, never half
  } catch {
    // A read-only checkout still runs; it just probes at every start.
  }
}

/** Forgets what this process read (tests: after changing FIRMAMENT_PROBE_CACHE or the files). */
export function resetProbeCacheForTests(): void {
  state = undefined;
}

const NT_GNU_BUILD_ID = 3;
const PT_NOTE = 4;

/**
 * The ELF's GNU build ID (hex), read from its PT_NOTE segments: a few small reads. A library
 * without one is identified by the SHA-256 of its bytes instead.
 */
export function libraryBuildId(path: string): string {
  const fd = openSync(path, 'r');
  try {
    const read = (pos: number, len: number): Buffer => {
      const b = Buffer.alloc(len);
      const n = readSync(fd, b, 0, len, pos);
      return b.subarray(0, n);
    };
    const h = read(0, 64);
    // ELF64, little-endian (x86-64 is all we load).
    if (h.length === 64 && h.readUInt32BE(0) === 0x7f454c46 && h[4] === 2 && h[5] === 1) {
      const phoff = Number(h.readBigUInt64LE(0x20));
      const phentsize = h.readUInt16LE(0x36);
      const phnum = h.readUInt16LE(0x38);
      const ph = read(phoff, phentsize * phnum);
      for (let i = 0; i < phnum && (i + 1) * phentsize <= ph.length; i++) {
        const p = ph.subarray(i * phentsize);
        if (p.readUInt32LE(0) !== PT_NOTE) continue;
        const notes = read(Number(p.readBigUInt64LE(8)), Math.min(Number(p.readBigUInt64LE(0x20)), 1 << 16));
        for (let off = 0; off + 12 <= notes.length; ) {
          const namesz = notes.readUInt32LE(off);
          const descsz = notes.readUInt32LE(off + 4);
          const type = notes.readUInt32LE(off + 8);
          const name = off + 12;
          const desc = name + ((namesz + 3) & ~3);
          if (desc + descsz > notes.length) break;
          if (type === NT_GNU_BUILD_ID && notes.toString('latin1', name, name + namesz) === 'GNU\0' && descsz > 0) return `gnu-${notes.toString('hex', desc, desc + descsz)}`;
          off = desc + ((descsz + 3) & ~3);
        }
      }
    }
  } finally {
    closeSync(fd);
  }
  return `sha256-${createHash('sha256').update(readFileSync(path)).digest('hex')}`;
}

/** Shape checks for cached results: an object whose listed fields are non-negative integers. */
export function hasIntFields<K extends string>(...fields: K[]): (v: unknown) => v is Record<K, number> {
  return (v: unknown): v is Record<K, number> =>
    typeof v === 'object' && v !== null && fields.every((f) => Number.isSafeInteger((v as Record<string, unknown>)[f]) && ((v as Record<string, number>)[f] ?? -1) >= 0);
}
