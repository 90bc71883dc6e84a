/** `firmament test`: run suites of boot tests in worker processes and report them (JUnit, JSON); merge shard reports. */
import { availableParallelism } from 'node:os';
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { dirname, relative } from 'node:path';
import { parseArgs } from 'node:util';
import { UsageError } from './args.js';
import { ensureImages } from './images.js';
import { loadSuite, type Suite } from '../test-runner/suite.js';
import { expandSuites, parseCliFaults, parseShard, selectShard } from '../test-runner/plan.js';
import { runTests, type Progress, type SnapshotPolicy, type TestResult } from '../test-runner/runner.js';
import { junitSuites, junitXml, mergeJunit, parseJunit } from '../test-runner/junit.js';

export const TEST_HELP = `firmament test <suite.toml|suite.json>... [options]
  Runs suites of boot tests (docs/test-runner.md): each test boots an image under the
  hypervisor ('image', as 'firmament run') or the whole boot path ('boot = true', as
  'firmament boot') in a worker process, and checks the exit status, serial regexes or a
  golden transcript, POST codes and container statuses. A suite is TOML, or JSON (with
  comments) when its name ends in .json: the same keys either way.

  --jobs N            worker processes at a time (default: the number of CPUs)
  --shard K/M         run only shard K of M (run i of the expanded list goes to shard i mod M + 1)
  --fault SPEC        run every boot test once per --fault (repeatable; 'none' = without)
  --filter REGEX      only tests whose id matches
  --junit FILE        write a JUnit XML report
  --json              print one JSON document on stdout (the progress line stays on stderr)
  --artifacts DIR     where failed attempts keep serial.log, report.json, stderr.log and a
                      machine snapshot (default firmament-artifacts)
  --snapshots WHEN    failure (default: when the exit status is not the expected one),
                      always (every failed attempt, whatever failed), never
  --list              print the test ids this run would execute (after --shard), and exit

firmament test --merge <a.xml> <b.xml>... [--junit FILE]
  Merges JUnit reports of shards into one (stdout, or FILE).

  Exit status: 0 every test passed (or was skipped), 1 a test failed, 2 bad usage or suite file.`;

export async function testCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: {
      jobs: { type: 'string' },
      shard: { type: 'string' },
      fault: { type: 'string', multiple: true },
      filter: { type: 'string' },
      junit: { type: 'string' },
      json: { type: 'boolean' },
      artifacts: { type: 'string' },
      snapshots: { type: 'string' },
      list: { type: 'boolean' },
      merge: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(TEST_HELP);
    return 0;
  }
  if (values.merge) return merge(positionals, values.junit);
  if (positionals.length === 0) throw new UsageError('test: expected a suite file (firmament test suite.toml); see firmament test --help');
  const jobs = Number(values.jobs ?? String(availableParallelism()));
  if (!Number.isInteger(jobs) || jobs < 1 || jobs > 256) throw new UsageError(`--jobs ${values.jobs}: expected a whole number from 1 to 256`);
  const shard = values.shard !== undefined ? parseShard(values.shard) : null;
  const snapshots = values.snapshots ?? 'failure';
  if (snapshots !== 'failure' && snapshots !== 'always' && snapshots !== 'never') throw new UsageError(`--snapshots ${snapshots}: expected failure, always or never`);
  let filter: RegExp | null = null;
  try {
    filter = values.filter !== undefined ? new RegExp(values.filter) : null;
  } catch (e) {
    throw new UsageError(`--filter ${values.filter}: ${(e as Error).message}`);
  }
  const cliFaults = parseCliFaults(values.fault ?? []);

  // Images are rebuilt when stale before their paths are checked.
  await ensureImages(true);
  const suites: Suite[] = positionals.map((f) => loadSuite(f));
  const names = new Map<string, string>();
  for (const s of suites) {
    const other = names.get(s.name);
    if (other !== undefined) throw new UsageError(`${s.file}: suite name '${s.name}' is also the name of ${other} (set suite = "..." in one of them)`);
    names.set(s.name, s.file);
  }
  const all = expandSuites(suites, cliFaults).filter((t) => !filter || filter.test(t.id));
  const tests = selectShard(all, shard);
  const shardText = shard ? `${shard.index}/${shard.count}` : null;
  if (values.list) {
    for (const t of tests) console.log(`${t.suite}/${t.id}`);
    return 0;
  }

  const startedAt = new Date();
  const wall0 = performance.now();
  const progress = progressPrinter(process.stderr);
  const results = await runTests(tests, { jobs, artifactsDir: values.artifacts ?? 'firmament-artifacts', snapshots: snapshots as SnapshotPolicy, onProgress: progress });
  const wallMs = performance.now() - wall0;
  progress.finish();

  if (values.junit !== undefined) {
    mkdirSync(dirname(values.junit), { recursive: true });
    writeFileSync(values.junit, junitXml(junitSuites(results, suites, { startedAt, shard: shardText, wallMs })));
  }
  const summary = summarize(results);
  if (values.json) process.stdout.write(JSON.stringify(jsonReport(results, suites, shardText, wallMs, summary), null, 2) + '\n');
  process.stderr.write(`${summary.passed} passed, ${summary.failed} failed${summary.skipped ? `, ${summary.skipped} skipped` : ''}${summary.flaky ? ` (${summary.flaky} flaky: passed on a retry)` : ''} in ${(wallMs / 1000).toFixed(1)} s${shardText ? ` (shard ${shardText}, ${tests.length} of ${all.length} tests)` : ''}\n`);
  for (const r of results.filter((x) => x.outcome === 'failed' || x.outcome === 'error')) {
    const last = r.attempts[r.attempts.length - 1]!;
    const messages = last.verdict.kind === 'passed' ? [] : last.verdict.messages;
    process.stderr.write(`FAIL ${r.test.suite}/${r.test.id}\n${messages.map((m) => `  ${m}`).join('\n')}\n${last.artifacts ? `  artefacts: ${relative(process.cwd(), last.artifacts)}\n` : ''}`);
  }
  return summary.failed > 0 ? 1 : 0;
}

interface Summary {
  passed: number;
  failed: number;
  skipped: number;
  flaky: number;
}

function summarize(results: readonly TestResult[]): Summary {
  return {
    passed: results.filter((r) => r.outcome === 'passed').length,
    failed: results.filter((r) => r.outcome === 'failed' || r.outcome === 'error').length,
    skipped: results.filter((r) => r.outcome === 'skipped').length,
    flaky: results.filter((r) => r.flaky).length,
  };
}

function jsonReport(results: readonly TestResult[], suites: readonly Suite[], shard: string | null, wallMs: number, summary: Summary): unknown {
  const test = (r: TestResult): unknown => ({
    id: r.test.id,
    name: r.test.spec.name,
    kind: r.test.spec.kind,
    faults: r.test.faults,
    outcome: r.outcome,
    flaky: r.flaky,
    durationMs: Math.round(r.durationMs),
    ...(r.test.spec.skip !== null ? { skip: r.test.spec.skip } : {}),
    attempts: r.attempts.map((a) => ({
      outcome: a.verdict.kind,
      ...(a.verdict.kind !== 'passed' ? { type: a.verdict.type, messages: a.verdict.messages } : {}),
      exitStatus: a.status,
      durationMs: Math.round(a.durationMs),
      command: a.command,
      artifacts: a.artifacts,
    })),
  });
  return {
    shard,
    wallMs: Math.round(wallMs),
    summary,
    suites: suites.map((s) => ({ name: s.name, file: s.file, tests: results.filter((r) => r.test.suite === s.name).map(test) })),
  };
}

/** A live progress line on a terminal; one line per finished test otherwise (CI logs). */
function progressPrinter(out: NodeJS.WriteStream): ((p: Progress) => void) & { finish(): void } {
  const t0 = performance.now();
  let shown: TestResult | null = null;
  const tty = out.isTTY === true;
  let latest: Progress | null = null;
  // On a terminal the line's clock moves once a second even while every worker is busy.
  const ticker = tty ? setInterval(() => latest && fn(latest), 1000) : null;
  ticker?.unref();
  const fn = (p: Progress): void => {
    latest = p;
    const elapsed = ((performance.now() - t0) / 1000).toFixed(1);
    const head = `[${p.done}/${p.total}] ${p.passed} passed, ${p.failed} failed${p.skipped ? `, ${p.skipped} skipped` : ''}`;
    if (tty) {
      const line = `${head}, running: ${p.running.join(' ') || '-'} (${elapsed} s)`;
      out.write(`\r\x1b[K${line.slice(0, Math.max(20, (out.columns ?? 100) - 1))}`);
    } else if (p.last && p.last !== shown) {
      shown = p.last;
      const r = p.last;
      const label = r.outcome === 'passed' ? (r.flaky ? 'PASS (flaky)' : 'PASS') : r.outcome === 'skipped' ? 'SKIP' : r.outcome === 'error' ? 'ERROR' : 'FAIL';
      out.write(`${head} | ${label} ${r.test.suite}/${r.test.id} (${(r.durationMs / 1000).toFixed(1)} s)\n`);
    }
  };
  return Object.assign(fn, {
    finish: () => {
      if (ticker) clearInterval(ticker);
      if (tty) out.write('\r\x1b[K');
    },
  });
}

function merge(files: string[], junitOut: string | undefined): number {
  if (files.length === 0) throw new UsageError('test --merge: expected JUnit files to merge (firmament test --merge a.xml b.xml)');
  const reports = files.map((file) => {
    let xml: string;
    try {
      xml = readFileSync(file, 'utf8');
    } catch (e) {
      throw new UsageError(`--merge ${file}: ${(e as Error).message}`);
    }
    return { file, suites: parseJunit(xml, file) };
  });
  const xml = junitXml(mergeJunit(reports));
  if (junitOut !== undefined) writeFileSync(junitOut, xml);
  else process.stdout.write(xml);
  return 0;
}

