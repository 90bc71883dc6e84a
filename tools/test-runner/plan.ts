/**
 * From suite files to the list of runs: the fault matrix expands a boot test
 * into one run per fault set, `--fault` multiplies every boot test by each
 * given fault, and `--shard K/M` keeps every M-th run of that expanded list.
 */
import { UsageError } from '../cli/args.js';
import { parseFault } from '../../machine/platform/faults.js';
import { variantLabel, type Suite, type TestSpec } from './suite.js';

export interface PlannedTest {
  /** Unique in its suite: the test's name, plus "[faults]" for a matrix variant. */
  id: string;
  suite: string;
  spec: TestSpec;
  /** The faults this run injects (boot tests). */
  faults: string[];
}

export interface Shard {
  index: number;
  count: number;
}

/** --shard K/M, 1-based like Playwright's and pytest-shard's. */
export function parseShard(text: string): Shard {
  const m = /^(\d+)\/(\d+)$/.exec(text.trim());
  const index = m ? Number(m[1]) : NaN;
  const count = m ? Number(m[2]) : NaN;
  if (!m || count < 1 || index < 1 || index > count) throw new UsageError(`--shard ${text}: expected K/M with 1 <= K <= M (e.g. --shard 2/4)`);
  return { index, count };
}

/** Checks --fault specs up front: a typo must not cost a CI run. */
export function parseCliFaults(specs: readonly string[]): string[] {
  return specs.map((s) => {
    if (s === 'none') return s;
    try {
      return parseFault(s).text;
    } catch (e) {
      throw new UsageError((e as Error).message);
    }
  });
}

/**
 * Every run of the suites in order. `cliFaults`: each boot test runs once per
 * entry ('none' = without an extra fault), on top of its own faults or matrix.
 */
export function expandSuites(suites: readonly Suite[], cliFaults: readonly string[] = []): PlannedTest[] {
  const out: PlannedTest[] = [];
  for (const suite of suites) {
    const ids = new Set<string>();
    for (const spec of suite.tests) {
      const variants = spec.kind === 'boot' ? bootVariants(spec, cliFaults) : [{ suffix: null, faults: [] }];
      for (const v of variants) {
        const id = v.suffix === null ? spec.name : `${spec.name}[${v.suffix}]`;
        if (ids.has(id)) throw new UsageError(`${suite.file}:${spec.line}: test '${spec.name}': the run '${id}' comes out twice (a matrix entry repeats a --fault?)`);
        ids.add(id);
        out.push({ id, suite: suite.name, spec, faults: v.faults });
      }
    }
  }
  return out;
}

function bootVariants(spec: TestSpec, cliFaults: readonly string[]): { suffix: string | null; faults: string[] }[] {
  const own = spec.faultMatrix ? spec.faultMatrix.map((m) => [...spec.faults, ...m]) : [spec.faults];
  const matrix = spec.faultMatrix !== null || cliFaults.length > 0;
  const sets = cliFaults.length ? own.flatMap((f) => cliFaults.map((c) => (c === 'none' ? f : [...f, c]))) : own;
  return sets.map((f) => {
    const faults = [...new Set(f)];
    return { suffix: matrix ? variantLabel(faults) : null, faults };
  });
}

/** Run i of the expanded list belongs to shard (i mod M) + 1: deterministic, and balanced to within one run. */
export function selectShard<T>(runs: readonly T[], shard: Shard | null): T[] {
  return shard ? runs.filter((_, i) => i % shard.count === shard.index - 1) : [...runs];
}
