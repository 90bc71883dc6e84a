/**
 * Behaviour profiles: a versioned JSON document with a VM's rates and sets
 * over a sliding window of guest time, and the thresholds the detector
 * holds it to (docs/security.md, "Behaviour profiles"). Learned from a
 * running VM or written by hand; either way it goes through parseProfile,
 * whose errors name the file and the field.
 */
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { DEFAULT_BUCKET_MS, DEFAULT_WINDOW_MS, RATE_METRICS, SET_METRICS, type RateMetric, type SetMetric } from './metrics.js';

export const PROFILE_FORMAT = 'firmament-behaviour-profile';
export const PROFILE_VERSION = 1;

/** A number, or a string in decimal or 0x hex ("0x3f8"). */
const hexOrNumber = z.union([
  z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER),
  z
    .string()
    .regex(/^(0x[0-9a-fA-F]+|[0-9]+)$/, 'expected a number or a 0x hex string')
    .transform((s) => Number(s))
    .refine((n) => Number.isSafeInteger(n), 'too large'),
]);

/** "0x110000-0x113000": pages from the first address up to (not including) the second; or one page address. */
const pageRange = z.union([
  hexOrNumber.transform((a) => ({ start: a, end: a + 4096 })),
  z
    .string()
    .regex(/^0x[0-9a-fA-F]+-0x[0-9a-fA-F]+$/, 'expected a page address or a range "0xSTART-0xEND"')
    .transform((s) => {
      const [a, b] = s.split('-').map((x) => Number(x)) as [number, number];
      return { start: a, end: b };
    })
    .refine((r) => r.start % 4096 === 0 && r.end % 4096 === 0 && r.end > r.start, 'range ends must be 4 KiB aligned and END > START'),
]);

const rate = z.strictObject({
  /** Mean per second of guest time over the learning run. */
  meanPerSecond: z.number().nonnegative(),
  /** Most seen in any one sliding window. */
  maxPerWindow: z.number().nonnegative(),
});

const rateKeys = z.enum(RATE_METRICS);
const setKeys = z.enum(SET_METRICS);

export const PROFILE_SCHEMA = z.strictObject({
  format: z.literal(PROFILE_FORMAT),
  version: z.literal(PROFILE_VERSION),
  /** The VM it was learned on (informational: profile-set names the VM it applies to). */
  vm: z.string().max(256).optional(),
  learned: z.strictObject({ fromMs: z.number().nonnegative(), toMs: z.number().nonnegative() }).optional(),
  window: z.strictObject({
    bucketMs: z.number().int().min(1).max(60_000).default(DEFAULT_BUCKET_MS),
    windowMs: z.number().int().min(1).max(600_000).default(DEFAULT_WINDOW_MS),
  }),
  /** What was observed (documentation for the reader; the detector uses thresholds). */
  rates: z.partialRecord(rateKeys, rate).default({}),
  /** Everything the VM may touch; a set left out is not checked. */
  sets: z.partialRecord(setKeys, z.array(z.union([hexOrNumber, pageRange])).max(1 << 20)).default({}),
  thresholds: z.strictObject({
    /** Most events per sliding window; a metric left out is not checked. */
    rates: z.partialRecord(rateKeys, z.number().nonnegative()).default({}),
    /** Fewest events per full sliding window: a steady behaviour (telemetry) that falls below it, to zero, is an anomaly. */
    floors: z.partialRecord(rateKeys, z.number().positive()).default({}),
    /** Guest time without deviation that ends an episode (the next deviation is a new anomaly). */
    quietMs: z.number().int().min(0).max(3_600_000).default(2000),
  }),
});

export type ProfileDocument = z.input<typeof PROFILE_SCHEMA>;

/** A parsed profile, ready for the detector. */
export interface BehaviourProfile {
  vm?: string;
  learned?: { fromMs: number; toMs: number };
  bucketMs: number;
  windowMs: number;
  rates: Partial<Record<RateMetric, { meanPerSecond: number; maxPerWindow: number }>>;
  sets: Partial<Record<SetMetric, Set<number>>>;
  thresholds: Partial<Record<RateMetric, number>>;
  /** Fewest events per full window (the drop rule); a metric left out may fall to zero. */
  floors: Partial<Record<RateMetric, number>>;
  quietMs: number;
}

export class ProfileError extends Error {
  override name = 'ProfileError';
}

function lineColumn(text: string, pos: number): string {
  const before = text.slice(0, pos);
  const line = before.split('\n').length;
  return `line ${line}, column ${pos - before.lastIndexOf('\n')}`;
}

/** For a misspelt metric or set name: the names there are. */
function knownKeys(issue: z.core.$ZodIssue): string {
  if (issue.code !== 'unrecognized_keys') return '';
  const last = issue.path[issue.path.length - 1];
  if (last === 'rates' || last === 'floors') return ` (rates: ${RATE_METRICS.join(', ')})`;
  if (last === 'sets') return ` (sets: ${SET_METRICS.join(', ')})`;
  return '';
}

/** Parses and checks a profile; errors read "SOURCE: FIELD: what is wrong". */
export function parseProfile(value: unknown, source = 'profile'): BehaviourProfile {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new ProfileError(`${source}: a profile is a JSON object {"format": "${PROFILE_FORMAT}", "version": ${PROFILE_VERSION}, ...}`);
  const v = (value as { version?: unknown }).version;
  if (typeof v === 'number' && v !== PROFILE_VERSION) throw new ProfileError(`${source}: version: profile version ${v} is not supported (this build reads version ${PROFILE_VERSION})`);
  let r: ReturnType<typeof PROFILE_SCHEMA.safeParse>;
  try {
    r = PROFILE_SCHEMA.safeParse(value);
  } catch (e) {
    throw new ProfileError(`${source}: not a valid profile (${(e as Error).message})`);
  }
  if (!r.success) {
    const issues = r.error.issues.slice(0, 3).map((i) => `${i.path.map(String).join('.') || '(top level)'}: ${i.message}${knownKeys(i)}`);
    throw new ProfileError(`${source}: ${issues.join('; ')}`);
  }
  const d = r.data;
  if (d.window.windowMs < d.window.bucketMs) throw new ProfileError(`${source}: window.windowMs: ${d.window.windowMs} is shorter than window.bucketMs ${d.window.bucketMs}`);
  const sets: BehaviourProfile['sets'] = {};
  for (const [k, list] of Object.entries(d.sets) as [SetMetric, (number | { start: number; end: number })[]][]) {
    const s = new Set<number>();
    for (const [i, item] of list.entries()) {
      if (typeof item === 'number') {
        s.add(k === 'codePages' ? item - (item % 4096) : item);
        continue;
      }
      if (k !== 'codePages') throw new ProfileError(`${source}: sets.${k}.${i}: ranges are only for codePages`);
      if ((item.end - item.start) / 4096 > 1 << 20) throw new ProfileError(`${source}: sets.${k}.${i}: range of more than 2^20 pages`);
      for (let p = item.start; p < item.end; p += 4096) s.add(p);
    }
    sets[k] = s;
  }
  return {
    ...(d.vm !== undefined ? { vm: d.vm } : {}),
    ...(d.learned ? { learned: d.learned } : {}),
    bucketMs: d.window.bucketMs,
    windowMs: d.window.windowMs,
    rates: d.rates,
    sets,
    thresholds: d.thresholds.rates,
    floors: d.thresholds.floors,
    quietMs: d.thresholds.quietMs,
  };
}

/** Reads a profile file; JSON syntax errors give the line and column. */
export function loadProfileFile(path: string): BehaviourProfile {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new ProfileError(`${path}: cannot read the profile (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  return parseProfileText(text, path);
}

export function parseProfileText(text: string, source: string): BehaviourProfile {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    const m = /position (\d+)/.exec((e as Error).message);
    throw new ProfileError(`${source}: not JSON (${(e as Error).message}${m ? `; ${lineColumn(text, Number(m[1]))}` : ''})`);
  }
  return parseProfile(value, source);
}

const hex = (n: number): string => `0x${n.toString(16)}`;

/** Consecutive pages as "0xSTART-0xEND" ranges. */
function pageRanges(pages: Iterable<number>): string[] {
  const sorted = [...pages].sort((a, b) => a - b);
  const out: string[] = [];
  let start = -1;
  let end = -1;
  for (const p of sorted) {
    if (p === end) {
      end += 4096;
      continue;
    }
    if (start >= 0) out.push(`${hex(start)}-${hex(end)}`);
    start = p;
    end = p + 4096;
  }
  if (start >= 0) out.push(`${hex(start)}-${hex(end)}`);
  return out;
}

/** The JSON document of a profile (what `profile learn` prints and `profile-set` takes). */
export function profileDocument(p: BehaviourProfile): ProfileDocument {
  const sets: Record<string, (string | number)[]> = {};
  for (const k of SET_METRICS) {
    const s = p.sets[k];
    if (!s) continue;
    sets[k] = k === 'codePages' ? pageRanges(s) : [...s].sort((a, b) => a - b).map((n) => (k === 'hypercalls' ? n : hex(n)));
  }
  return {
    format: PROFILE_FORMAT,
    version: PROFILE_VERSION,
    ...(p.vm !== undefined ? { vm: p.vm } : {}),
    ...(p.learned ? { learned: p.learned } : {}),
    window: { bucketMs: p.bucketMs, windowMs: p.windowMs },
    rates: p.rates,
    sets,
    thresholds: { rates: p.thresholds, ...(Object.keys(p.floors).length > 0 ? { floors: p.floors } : {}), quietMs: p.quietMs },
  };
}
