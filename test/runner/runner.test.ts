/**
 * The runner's process handling with stand-in workers (small node scripts
 * that print what `firmament run --json` prints): retries of flaky tests,
 * killing a worker that outlives its timeout, at most --jobs workers at once,
 * and what a failed attempt leaves behind. Real workers: firmament-test.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { existsSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseSuite } from '../../tools/test-runner/suite.js';
import { expandSuites, type PlannedTest } from '../../tools/test-runner/plan.js';
import { runTests, workerArgs, type WorkerCommand } from '../../tools/test-runner/runner.js';

const dir = mkdtempSync(join(tmpdir(), 'fm-runner-'));

function plan(src: string): PlannedTest[] {
  return expandSuites([parseSuite(src, join(dir, 'suite.toml'), { checkFiles: false })]);
}

/**
 * A stand-in worker: `script` runs with ATTEMPT (1, 2, ... per test, counted in
 * a file), ID and LOG in scope, and prints a report like `firmament run --json`.
 */
function fakeWorker(script: string): (t: PlannedTest) => WorkerCommand {
  const counts = new Map<string, number>();
  return (t) => {
    const attempt = (counts.get(t.id) ?? 0) + 1;
    counts.set(t.id, attempt);
    const body = `const ATTEMPT = ${attempt}, ID = ${JSON.stringify(t.id)}, LOG = ${JSON.stringify(join(dir, 'log'))};
const fs = require('node:fs');
const report = (code, serial) => { process.stdout.write(JSON.stringify({ serial, exit: { reason: 'debug-exit', code }, guests: [] })); process.exitCode = code; };
${script}`;
    return { command: process.execPath, args: ['-e', body] };
  };
}

describe('test runner processes', () => {
  it('retries a failing test up to its retries, and reports a pass after a failure as flaky', async () => {
    const tests = plan(`
[[test]]
name = "flaky"
image = "x.elf"
retries = 2
expect.serial = ["ready"]
[[test]]
name = "broken"
image = "x.elf"
retries = 1
[[test]]
name = "fine"
image = "x.elf"
retries = 3
`);
    const art = join(dir, 'art-retries');
    const results = await runTests(tests, {
      jobs: 2,
      artifactsDir: art,
      snapshots: 'never',
      worker: fakeWorker(`
if (ID === 'flaky') report(1, ATTEMPT < 2 ? 'booting\\n' : 'booting\\nready\\n');
else if (ID === 'broken') report(7, 'oops\\n');
else report(1, 'ok\\n');`),
    });
    const [flaky, broken, fine] = results;
    expect(flaky).toMatchObject({ outcome: 'passed', flaky: true });
    expect(flaky!.attempts.map((a) => a.verdict.kind)).toEqual(['failure', 'passed']);
    expect(flaky!.attempts[0]!.verdict).toEqual({ kind: 'failure', type: 'expectation', messages: ['serial: /ready/ never appeared'] });
    expect(broken).toMatchObject({ outcome: 'failed', flaky: false });
    expect(broken!.attempts).toHaveLength(2);
    expect(broken!.attempts[1]!.verdict).toEqual({ kind: 'failure', type: 'expectation', messages: ['exit status 7 (debug-exit), expected 1'] });
    expect(fine).toMatchObject({ outcome: 'passed', flaky: false });
    expect(fine!.attempts).toHaveLength(1);
    // Failed attempts keep their artefacts; passing ones and passing tests leave nothing.
    expect(readdirSync(join(art, 'suite')).sort()).toEqual(['broken', 'flaky']);
    expect(readdirSync(join(art, 'suite', 'flaky'))).toEqual(['attempt-1']);
    expect(readFileSync(join(art, 'suite', 'broken', 'attempt-2', 'serial.log'), 'latin1')).toBe('oops\n');
    const result = readFileSync(join(art, 'suite', 'broken', 'attempt-2', 'result.txt'), 'utf8');
    expect(result).toContain('exit status 7 (debug-exit), expected 1');
    expect(result).toContain('snapshot: none (--snapshots never)');
    expect(JSON.parse(readFileSync(join(art, 'suite', 'broken', 'attempt-1', 'report.json'), 'utf8'))).toMatchObject({ exit: { code: 7 } });
  });

  it('kills a worker that outlives its timeout plus the grace period, and reports it as an error', async () => {
    const tests = plan('[[test]]\nname = "hangs"\nimage = "x.elf"\ntimeout = 0.2\n[[test]]\nname = "quick"\nimage = "x.elf"\ntimeout = 60\n');
    const results = await runTests(tests, {
      jobs: 2,
      artifactsDir: join(dir, 'art-kill'),
      snapshots: 'failure',
      graceMs: 300,
      worker: fakeWorker(`if (ID === 'hangs') { process.stderr.write('stuck in a native call\\n'); setInterval(() => {}, 1000); } else report(1, 'done\\n');`),
    });
    expect(results[0]).toMatchObject({ outcome: 'error' });
    const v = results[0]!.attempts[0]!.verdict;
    expect(v.kind === 'error' && v.type).toBe('killed');
    // Its stderr is quoted when it got to write any before the kill (a loaded host may not even have started it).
    expect(v.kind === 'error' && v.messages[0]).toMatch(/^the worker did not exit within 0\.2 s plus the grace period and was killed(; stderr: stuck in a native call)?$/);
    expect(results[0]!.attempts[0]!.status).toBeNull();
    expect(readFileSync(join(dir, 'art-kill', 'suite', 'hangs', 'attempt-1', 'result.txt'), 'utf8')).toContain('snapshot: none (the worker ended without a report)');
    expect(results[1]).toMatchObject({ outcome: 'passed' });
  });

  it('a worker that prints no report is an error with its stderr, not a crash of the runner', async () => {
    const tests = plan('[[test]]\nname = "usage"\nimage = "x.elf"\n');
    const [r] = await runTests(tests, { jobs: 1, artifactsDir: join(dir, 'art-usage'), snapshots: 'never', worker: fakeWorker(`process.stderr.write('firmament: --vcpus 0: expected 1..64\\n'); process.exitCode = 2;`) });
    expect(r!.outcome).toBe('error');
    expect(r!.attempts[0]!.verdict).toEqual({ kind: 'error', type: 'worker', messages: ['the worker printed no JSON report (exit status 2): nothing on stdout; stderr: firmament: --vcpus 0: expected 1..64'] });
  });

  it("records a snapshot the machine could not save in the artefacts, and judges the run as usual", async () => {
    const tests = plan('[[test]]\nname = "nosave"\nimage = "x.elf"\n');
    const art = join(dir, 'art-nosave');
    const [r] = await runTests(tests, {
      jobs: 1,
      artifactsDir: art,
      snapshots: 'always',
      worker: fakeWorker(`process.stdout.write(JSON.stringify({ serial: 'x', exit: { reason: 'triple-fault', code: 0 }, snapshot: { file: 'f', error: 'saving the machine state failed: hypervisor: not yet' } }));`),
    });
    expect(r!.attempts[0]!.verdict).toEqual({ kind: 'failure', type: 'expectation', messages: ['exit status 0 (triple-fault), expected 1'] });
    const attempt = join(art, 'suite', 'nosave', 'attempt-1');
    expect(readFileSync(join(attempt, 'snapshot-error.txt'), 'utf8')).toBe('saving the machine state failed: hypervisor: not yet\n');
    expect(readFileSync(join(attempt, 'result.txt'), 'utf8')).toContain('snapshot: not saved: saving the machine state failed: hypervisor: not yet');
  });

  it('runs at most --jobs workers at once, and returns results in suite order', async () => {
    const names = ['a', 'b', 'c', 'd', 'e', 'f'];
    const tests = plan(names.map((n) => `[[test]]\nname = "${n}"\nimage = "x.elf"\n`).join(''));
    writeFileSync(join(dir, 'log'), '');
    // Each worker logs its start, waits a little, and logs its end: the log's order bounds the overlap.
    const results = await runTests(tests, {
      jobs: 2,
      artifactsDir: join(dir, 'art-jobs'),
      snapshots: 'never',
      worker: fakeWorker(`fs.appendFileSync(LOG, '+' + ID + '\\n'); setTimeout(() => { fs.appendFileSync(LOG, '-' + ID + '\\n'); report(1, ''); }, 150);`),
    });
    expect(results.map((r) => r.test.id)).toEqual(names);
    expect(results.every((r) => r.outcome === 'passed')).toBe(true);
    let running = 0;
    let most = 0;
    for (const line of readFileSync(join(dir, 'log'), 'utf8').trim().split('\n')) {
      running += line.startsWith('+') ? 1 : -1;
      most = Math.max(most, running);
    }
    expect(running).toBe(0);
    expect(most).toBeLessThanOrEqual(2);
  });

  it('turns a test into the firmament command line a user would type', () => {
    const [run, boot] = plan(`
[[test]]
name = "g"
image = "/img/g.elf"
cmdline = "a=1 b"
vcpus = 2
mem = "32M"
clock = "realtime"
timeout = 5
[[test]]
name = "b"
boot = true
guests = ["/img/g.elf"]
mem = "256M"
guest-mem = "64M"
cpus = 2
faults = ["uart-dead"]
strict = true
seed = 7
`);
    expect(workerArgs(run!, null)).toEqual(['run', '/img/g.elf', '--vcpus', '2', '--cpus', '1', '--mem', String(32 << 20), '--cmdline', 'a=1 b', '--clock', 'realtime', '--rtc', 'base=2026-01-01', '--timeout', '5', '--json']);
    expect(workerArgs(boot!, '/art/s.fmsnap')).toEqual(['boot', '--cpus', '2', '--seed', '7', '--guest-vcpus', '1', '--mem', String(256 << 20), '--guest-mem', String(64 << 20), '--guest', '/img/g.elf', '--fault', 'uart-dead', '--strict', '--clock', 'virtual', '--rtc', 'base=2026-01-01', '--timeout', '60', '--json', '--snapshot-on-exit', '/art/s.fmsnap']);
    expect(existsSync(dir)).toBe(true);
  });
});
