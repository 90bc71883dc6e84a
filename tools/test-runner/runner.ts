/**
 * Runs planned tests in worker processes (`firmament run|boot ... --json`),
 * `jobs` at a time, each killed if it outlives its timeout plus a grace period.
 * Failing tests are retried up to their `retries`; every failed attempt keeps
 * its artefacts (serial log, JSON report, stderr, and a machine snapshot
 * saved by the worker when the run ended unexpectedly).
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { PROJECT_ROOT } from '../../machine/cpu/unicorn/locate.js';
import type { PlannedTest } from './plan.js';
import { consoleText, judge, type Verdict, type WorkerOutcome, type WorkerReport } from './verdict.js';

/** failure: snapshot when the exit status is not the expected one; always: every attempt (kept if it fails); never. */
export type SnapshotPolicy = 'failure' | 'always' | 'never';

export interface Attempt {
  verdict: Verdict;
  durationMs: number;
  status: number | null;
  command: string[];
  /** The console as the expectations saw it. */
  console: string;
  /** Folder with this attempt's artefacts (failed attempts only). */
  artifacts: string | null;
}

export interface TestResult {
  test: PlannedTest;
  outcome: 'passed' | 'failed' | 'error' | 'skipped';
  /** Passed after failing at least once. */
  flaky: boolean;
  attempts: Attempt[];
  durationMs: number;
}

export interface Progress {
  done: number;
  total: number;
  passed: number;
  failed: number;
  skipped: number;
  running: string[];
  last: TestResult | null;
}

export interface WorkerCommand {
  command: string;
  args: string[];
}

export interface RunOptions {
  jobs: number;
  /** Root of the artefact folders: <dir>/<suite>/<test id>/attempt-<n>/. */
  artifactsDir: string;
  snapshots: SnapshotPolicy;
  /** Extra time past a test's timeout before its worker is killed (start-up, writing a snapshot). */
  graceMs?: number;
  onProgress?: (p: Progress) => void;
  /** The worker command for a test (tests use this to put a stand-in worker in place). */
  worker?: (test: PlannedTest, snapshotFile: string | null) => WorkerCommand;
}

const CLI = join(PROJECT_ROOT, 'tools/firmament.mjs');
const DEFAULT_GRACE_MS = 30_000;
/** stdout kept from a worker: reports carry serial logs, but never unbounded ones. */
const MAX_STDOUT = 256 * 1024 * 1024;

/** The RTC date every test runs at (the CMOS model's own default epoch). */
export const FIXED_RTC_BASE = '2026-01-01';

/** The `firmament` command line that runs one planned test. */
export function workerArgs(t: PlannedTest, snapshotFile: string | null): string[] {
  const s = t.spec;
  const args: string[] = [];
  if (s.kind === 'run') {
    args.push('run', s.image!, '--vcpus', String(s.vcpus), '--cpus', String(s.cpus));
    if (s.memBytes !== null) args.push('--mem', String(s.memBytes));
    if (s.cmdline !== null) args.push('--cmdline', s.cmdline);
  } else {
    args.push('boot', '--cpus', String(s.cpus), '--seed', String(s.seed), '--guest-vcpus', String(s.vcpus));
    if (s.memBytes !== null) args.push('--mem', String(s.memBytes));
    if (s.guestMemBytes !== null) args.push('--guest-mem', String(s.guestMemBytes));
    for (const g of s.guests) args.push('--guest', g);
    for (const f of t.faults) args.push('--fault', f);
    if (s.strict) args.push('--strict');
  }
  // A fixed RTC (the CLI's default is the host's time): a test's outcome must not depend on the date.
  args.push('--clock', s.clock, '--rtc', `base=${FIXED_RTC_BASE}`, '--timeout', String(s.timeoutS), '--json');
  if (snapshotFile !== null) args.push('--snapshot-on-exit', snapshotFile);
  return args;
}

function defaultWorker(policy: SnapshotPolicy): (t: PlannedTest, snapshotFile: string | null) => WorkerCommand {
  return (t, snapshotFile) => {
    const args = workerArgs(t, snapshotFile);
    if (snapshotFile !== null && policy === 'failure') args.push('--snapshot-unless-status', String(t.spec.expect.exit));
    return { command: process.execPath, args: [CLI, ...args] };
  };
}

/** A word a POSIX shell reads back as itself: the command lines in result.txt are meant to be pasted. */
export function shellWord(s: string): string {
  return /^[\w./:=+,@%-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

/** A folder name from a test id ("boot[uart-dead+ram:0x3000000+0x1000]" keeps its meaning, loses '/' and ':'). */
export function safeName(id: string): string {
  return id.replace(/[^\w.+[\]=-]+/g, '_');
}

function runWorker(cmd: WorkerCommand, killAfterMs: number): Promise<WorkerOutcome> {
  return new Promise((resolvePromise) => {
    const t0 = performance.now();
    const child = spawn(cmd.command, cmd.args, { stdio: ['ignore', 'pipe', 'pipe'], cwd: PROJECT_ROOT });
    const out: Buffer[] = [];
    let outBytes = 0;
    let stderr = '';
    let killed = false;
    let spawnError: string | null = null;
    const timer = setTimeout(() => {
      killed = true;
      child.kill('SIGKILL');
    }, killAfterMs);
    child.stdout.on('data', (d: Buffer) => {
      outBytes += d.length;
      if (outBytes <= MAX_STDOUT) out.push(d);
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr = (stderr + d.toString()).slice(-64 * 1024);
    });
    child.on('error', (e) => {
      spawnError = e.message;
    });
    child.on('close', (status, signal) => {
      clearTimeout(timer);
      const text = Buffer.concat(out).toString('utf8');
      let report: WorkerReport | null = null;
      let reportError: string | null = spawnError;
      if (!spawnError) {
        if (outBytes > MAX_STDOUT) reportError = `the report is over ${MAX_STDOUT >> 20} MiB`;
        else if (text.trim() === '') reportError = 'nothing on stdout';
        else {
          try {
            const parsed: unknown = JSON.parse(text);
            if (parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed)) report = parsed as WorkerReport;
            else reportError = 'stdout is JSON but not a report object';
          } catch (e) {
            reportError = `stdout is not JSON (${(e as Error).message}): ${JSON.stringify(text.slice(0, 200))}`;
          }
        }
      }
      resolvePromise({ status, signal, killed, report, reportError, stderr, durationMs: performance.now() - t0 });
    });
  });
}

/** What a failed attempt leaves behind for the user. */
function keepArtifacts(dir: string, t: PlannedTest, command: string[], o: WorkerOutcome, verdict: Verdict, consoleLog: string, snapshotFile: string | null, policy: SnapshotPolicy): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'serial.log'), consoleLog, 'latin1');
  for (const g of t.spec.kind === 'boot' ? (o.report?.guests ?? []) : []) writeFileSync(join(dir, `guest-${safeName(g.name)}.log`), g.serial, 'latin1');
  if (o.report) writeFileSync(join(dir, 'report.json'), JSON.stringify(o.report, null, 2) + '\n');
  if (o.stderr) writeFileSync(join(dir, 'stderr.log'), o.stderr);
  const messages = verdict.kind === 'passed' ? [] : verdict.messages;
  const lines = [`test: ${t.suite}/${t.id}`, `command: ${command.map(shellWord).join(' ')}`, `exit status: ${o.status ?? `signal ${o.signal}`}`, '', ...messages];
  const snap = o.report?.snapshot;
  if (snap && 'error' in snap) {
    writeFileSync(join(dir, 'snapshot-error.txt'), snap.error + '\n');
    lines.push('', `snapshot: not saved: ${snap.error}`);
  } else if (snapshotFile && existsSync(snapshotFile)) {
    lines.push('', `snapshot: ${snapshotFile}`, `  open it: firmament tui --restore ${shellWord(snapshotFile)}`);
  } else if (policy === 'never') {
    lines.push('', 'snapshot: none (--snapshots never)');
  } else if (o.killed || !o.report) {
    lines.push('', 'snapshot: none (the worker ended without a report)');
  } else {
    lines.push('', `snapshot: none: the run ended with the expected exit status ${o.status} (use --snapshots always to keep one for every failed attempt)`);
  }
  writeFileSync(join(dir, 'result.txt'), lines.join('\n') + '\n');
}

/** A suite's artefact folder goes when nothing failed in it (sync, so no other lane is writing into it meanwhile). */
function removeIfEmpty(dir: string): void {
  try {
    if (readdirSync(dir).length === 0) rmdirSync(dir);
  } catch {
    // Already gone, or someone else's files: leave it.
  }
}

async function runTest(t: PlannedTest, opts: RunOptions, worker: (t: PlannedTest, s: string | null) => WorkerCommand): Promise<TestResult> {
  if (t.spec.skip !== null) return { test: t, outcome: 'skipped', flaky: false, attempts: [], durationMs: 0 };
  const attempts: Attempt[] = [];
  const testDir = resolve(opts.artifactsDir, safeName(t.suite), safeName(t.id));
  rmSync(testDir, { recursive: true, force: true });
  for (let n = 1; n <= t.spec.retries + 1; n++) {
    const dir = join(testDir, `attempt-${n}`);
    const snapshotFile = opts.snapshots === 'never' ? null : join(dir, 'snapshot.fmsnap');
    if (snapshotFile) mkdirSync(dir, { recursive: true });
    const cmd = worker(t, snapshotFile);
    const o = await runWorker(cmd, t.spec.timeoutS * 1000 + (opts.graceMs ?? DEFAULT_GRACE_MS));
    const verdict = judge(t.spec.kind, t.spec.expect, o, t.spec.timeoutS);
    const consoleLog = o.report ? consoleText(t.spec.kind, o.report) : '';
    const command = [cmd.command, ...cmd.args];
    if (verdict.kind === 'passed') {
      rmSync(dir, { recursive: true, force: true });
      attempts.push({ verdict, durationMs: o.durationMs, status: o.status, command, console: consoleLog, artifacts: null });
      break;
    }
    keepArtifacts(dir, t, command, o, verdict, consoleLog, snapshotFile, opts.snapshots);
    attempts.push({ verdict, durationMs: o.durationMs, status: o.status, command, console: consoleLog, artifacts: dir });
  }
  const last = attempts[attempts.length - 1]!;
  const outcome = last.verdict.kind === 'passed' ? 'passed' : last.verdict.kind === 'error' ? 'error' : 'failed';
  if (attempts.every((a) => a.artifacts === null)) {
    rmSync(testDir, { recursive: true, force: true });
    removeIfEmpty(dirname(testDir));
  }
  return { test: t, outcome, flaky: outcome === 'passed' && attempts.length > 1, attempts, durationMs: attempts.reduce((n, a) => n + a.durationMs, 0) };
}

/** Runs the tests `jobs` at a time; results come back in the planned order. */
export async function runTests(tests: readonly PlannedTest[], opts: RunOptions): Promise<TestResult[]> {
  const worker = opts.worker ?? defaultWorker(opts.snapshots);
  const results: TestResult[] = new Array<TestResult>(tests.length);
  const progress: Progress = { done: 0, total: tests.length, passed: 0, failed: 0, skipped: 0, running: [], last: null };
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < tests.length) {
      const i = next++;
      const t = tests[i]!;
      progress.running.push(t.id);
      opts.onProgress?.(progress);
      const r = await runTest(t, opts, worker);
      results[i] = r;
      progress.running.splice(progress.running.indexOf(t.id), 1);
      progress.done++;
      if (r.outcome === 'passed') progress.passed++;
      else if (r.outcome === 'skipped') progress.skipped++;
      else progress.failed++;
      progress.last = r;
      opts.onProgress?.(progress);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(opts.jobs, tests.length)) }, lane));
  return results;
}
