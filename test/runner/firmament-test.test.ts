/**
 * `firmament test` end to end, with real workers: the project's guest golden
 * cases (test/suites/guests.toml) pass through it; a suite of known outcomes
 * (test/fixtures/suites/mixed.toml) runs as two shards whose merged JUnit is
 * the whole suite, with the failures' messages, retries, a timeout, a fault
 * matrix, and snapshots that restore (in a new machine, and in the TUI).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { buildImages } from '../../tools/build-images.mjs';
import { parseJunit, type JunitCase } from '../../tools/test-runner/junit.js';
import { loadSuite } from '../../tools/test-runner/suite.js';
import { readMachineSnapshot } from '../../tools/cli/snapshot-file.js';
import { createBootMachine } from '../../vmm/boot.js';
import { parseFault } from '../../machine/platform/faults.js';

const ROOT = resolve(import.meta.dirname, '../..');
const CLI = join(ROOT, 'tools/firmament.mjs');
const XSD = join(ROOT, 'test/fixtures/junit.xsd');
const hasXmllint = spawnSync('xmllint', ['--version']).status === 0;
const hasTmux = spawnSync('tmux', ['-V']).status === 0;
let dir = '';

interface CliRun {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the CLI without blocking the event loop (two shards run side by side). */
function firmament(...args: string[]): Promise<CliRun> {
  return new Promise((done, fail) => {
    const child = spawn(process.execPath, [CLI, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', fail);
    child.on('close', (status) => done({ status, stdout, stderr }));
  });
}

function validate(file: string): void {
  const r = spawnSync('xmllint', ['--noout', '--schema', XSD, file], { encoding: 'utf8' });
  expect(r.stderr).toBe(`${file} validates\n`);
  expect(r.status).toBe(0);
}

interface JsonTest {
  id: string;
  outcome: string;
  flaky: boolean;
  attempts: { outcome: string; type?: string; messages?: string[]; exitStatus: number | null; artifacts: string | null }[];
}
const testsOf = (json: string): JsonTest[] => (JSON.parse(json) as { suites: { tests: JsonTest[] }[] }).suites.flatMap((s) => s.tests);

beforeAll(async () => {
  await buildImages({ quiet: true });
  dir = mkdtempSync(join(tmpdir(), 'fm-firmament-test-'));
});

afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe.skipIf(!hasXmllint)('firmament test', () => {
  it("runs the project's guest golden cases: every one passes, and the JUnit report is complete and valid", async () => {
    const junit = join(dir, 'guests.xml');
    const r = await firmament('test', 'test/suites/guests.toml', '--jobs', '2', '--junit', junit, '--json', '--artifacts', join(dir, 'art-guests'));
    const count = loadSuite(join(ROOT, 'test/suites/guests.toml')).tests.length;
    expect(r.stderr).toMatch(new RegExp(`^${count} passed, 0 failed in [\\d.]+ s$`, 'm'));
    expect(r.status).toBe(0);
    const tests = testsOf(r.stdout);
    expect(tests.map((t) => [t.id, t.outcome])).toEqual(loadSuite(join(ROOT, 'test/suites/guests.toml')).tests.map((t) => [t.name, 'passed']));
    validate(junit);
    const [suite] = parseJunit(readFileSync(junit, 'utf8'), junit);
    expect(suite!.name).toBe('guests');
    expect(suite!.cases).toHaveLength(count);
    expect(suite!.cases.every((c) => c.outcome.kind === 'passed' && c.classname === 'firmament.guests' && c.timeS > 0)).toBe(true);
    // The console of each case is in the report: the golden transcript (CR LF reads back as LF in XML).
    expect(suite!.cases.find((c) => c.name === 'hello')!.systemOut).toBe(readFileSync(join(ROOT, 'test/guests/expected/hello.txt'), 'latin1').replace(/\r\n/g, '\n'));
    // Passing tests leave no artefacts.
    expect(existsSync(join(dir, 'art-guests', 'guests'))).toBe(false);
  }, 600_000);

  it('guests.toml describes every guest golden case of cases.json (the QEMU oracle list)', () => {
    const manifest = JSON.parse(readFileSync(join(ROOT, 'test/guests/expected/cases.json'), 'utf8')) as { cases: { guest: string; expected: string; append?: string; smp?: number; cpu?: string; exitCode: number }[] };
    const described = loadSuite(join(ROOT, 'test/suites/guests.toml')).tests.map((t) => ({ guest: basename(t.image!, '.elf'), expected: basename(t.expect.serialFile!.path), append: t.cmdline ?? undefined, vcpus: t.vcpus, exit: t.expect.exit, clock: t.clock }));
    const wanted = manifest.cases.filter((c) => c.cpu === undefined).map((c) => ({ guest: c.guest, expected: c.expected, append: c.append, vcpus: c.smp ?? 1, exit: (c.exitCode << 1) | 1, clock: 'virtual' }));
    expect(described).toEqual(wanted);
  });

  describe('a suite of known outcomes, run as two shards', () => {
    const suiteFile = 'test/fixtures/suites/mixed.toml';
    const art = () => join(dir, 'art-mixed');
    let merged: JunitCase[] = [];
    const json: JsonTest[] = [];
    let listed: string[] = [];

    beforeAll(async () => {
      const list = await firmament('test', suiteFile, '--list');
      expect(list.status).toBe(0);
      listed = list.stdout.trim().split('\n');
      const shards = await Promise.all([1, 2].map((k) => firmament('test', suiteFile, '--shard', `${k}/2`, '--jobs', '1', '--junit', join(dir, `shard${k}.xml`), '--json', '--artifacts', art())));
      for (const s of shards) {
        expect(s.status, s.stderr).toBe(1);
        json.push(...testsOf(s.stdout));
      }
      const m = await firmament('test', '--merge', join(dir, 'shard1.xml'), join(dir, 'shard2.xml'), '--junit', join(dir, 'merged.xml'));
      expect(m.status, m.stderr).toBe(0);
      merged = parseJunit(readFileSync(join(dir, 'merged.xml'), 'utf8'), 'merged.xml').flatMap((s) => s.cases);
    }, 600_000);

    const verdict = (id: string): JunitCase => merged.find((c) => c.name === id)!;

    it('the shards split the suite and their merged report is the whole suite, valid JUnit', () => {
      expect(listed).toEqual(['mixed/hello', 'mixed/hello-wrong', 'mixed/timer-timeout', 'mixed/not-yet', 'mixed/boot[none]', 'mixed/boot[cmos-checksum]', 'mixed/boot-cut-short']);
      for (const f of ['shard1.xml', 'shard2.xml', 'merged.xml']) validate(join(dir, f));
      const shard1 = parseJunit(readFileSync(join(dir, 'shard1.xml'), 'utf8'), 'shard1.xml')[0]!.cases.map((c) => c.name);
      const shard2 = parseJunit(readFileSync(join(dir, 'shard2.xml'), 'utf8'), 'shard2.xml')[0]!.cases.map((c) => c.name);
      expect(shard1).toEqual(['hello', 'timer-timeout', 'boot[none]', 'boot-cut-short']);
      expect(shard2).toEqual(['hello-wrong', 'not-yet', 'boot[cmos-checksum]']);
      expect(merged.map((c) => `mixed/${c.name}`).sort()).toEqual([...listed].sort());
      expect(readFileSync(join(dir, 'merged.xml'), 'utf8')).toMatch(/<testsuite name="mixed" tests="7" failures="4" errors="0" skipped="1"/);
    });

    it('a test that meets its expectations passes', () => {
      expect(verdict('hello').outcome).toEqual({ kind: 'passed' });
      expect(verdict('boot[none]').outcome).toEqual({ kind: 'passed' });
      expect(verdict('not-yet').outcome).toEqual({ kind: 'skipped', message: 'waiting for issue 42' });
    });

    it('failures say what was expected and what happened, one message per expectation', () => {
      const wrong = verdict('hello-wrong').outcome;
      expect(wrong).toMatchObject({ kind: 'failure', type: 'expectation', message: 'exit status 1 (debug-exit: isa-debug-exit value 0x0), expected 3' });
      expect(wrong.kind === 'failure' && wrong.text).toMatch(/^exit status 1 .*expected 3\nserial: \/no such line\/ never appeared\nserial: \/goodbye\/ appeared at line 17: "goodbye"\n\ncommand: .* run .*hello\.elf .*\nartefacts: .*attempt-2$/);
      // retries = 1: two attempts, both failed, both kept.
      expect(verdict('hello-wrong').systemErr).toMatch(/^attempt 1: failure: exit status 1 .*\nattempt 2: failure: /);
      expect(json.find((t) => t.id === 'hello-wrong')!.attempts.map((a) => a.outcome)).toEqual(['failure', 'failure']);
      expect(verdict('timer-timeout').outcome).toMatchObject({ kind: 'failure', type: 'timeout', message: 'timed out: no exit within 0.5 s; expected exit status 1' });
      expect(verdict('boot[cmos-checksum]').outcome).toMatchObject({ kind: 'failure', message: 'container cmos: fixed, expected pass' });
      expect(verdict('boot-cut-short').outcome).toMatchObject({ kind: 'failure', type: 'timeout', message: expect.stringMatching(/^timed out: no exit within 1 s \([\d.]+ ms of virtual time\); expected exit status 0$/) });
    });

    it('failed attempts keep the serial log, the report, and a snapshot when the run ended unexpectedly', () => {
      for (const a of ['attempt-1', 'attempt-2']) expect(readdirSync(join(art(), 'mixed', 'hello-wrong', a)).sort()).toEqual(['report.json', 'result.txt', 'serial.log', 'snapshot.fmsnap']);
      expect(readFileSync(join(art(), 'mixed', 'hello-wrong', 'attempt-1', 'serial.log'), 'latin1')).toBe(readFileSync(join(ROOT, 'test/guests/expected/hello.txt'), 'latin1'));
      expect(existsSync(join(art(), 'mixed', 'timer-timeout', 'attempt-1', 'snapshot.fmsnap'))).toBe(true);
      // Boot exited 0 as expected and only a container differed: no snapshot, and result.txt says why.
      const fixed = join(art(), 'mixed', 'boot[cmos-checksum]', 'attempt-1');
      expect(existsSync(join(fixed, 'snapshot.fmsnap'))).toBe(false);
      expect(readFileSync(join(fixed, 'result.txt'), 'utf8')).toContain('snapshot: none: the run ended with the expected exit status 0 (use --snapshots always');
      expect(readFileSync(join(fixed, 'serial.log'), 'latin1')).toMatch(/cmos/);
      expect(existsSync(join(art(), 'mixed', 'hello'))).toBe(false);
    });

    it("a bare boot's snapshot restores into a new machine of its shape, which finishes like an uninterrupted boot", async () => {
      const file = join(art(), 'mixed', 'boot-cut-short', 'attempt-1', 'snapshot.fmsnap');
      expect(readFileSync(join(art(), 'mixed', 'boot-cut-short', 'attempt-1', 'result.txt'), 'utf8')).toContain(`open it: firmament tui --restore ${file}`);
      const snap = readMachineSnapshot(file);
      expect(snap.shape).toEqual({ command: 'boot', memBytes: 64 << 20, cpus: 1, faults: [], seed: 0, guests: [], handedOff: false });
      if (snap.shape.command !== 'boot') throw new Error('expected a boot snapshot');
      const shape = { memBytes: snap.shape.memBytes, cpus: snap.shape.cpus, faults: snap.shape.faults.map(parseFault), seed: snap.shape.seed, pace: 'virtual' as const };
      const reference = createBootMachine(shape);
      const refExit = await reference.run({ timeoutMs: 120_000 });
      const refSerial = reference.serial;
      reference.close();
      const restored = createBootMachine(shape);
      try {
        restored.restoreState(snap.machine!);
        const savedSerial = restored.serial;
        expect(refSerial.startsWith(savedSerial)).toBe(true);
        const exit = await restored.run({ timeoutMs: 120_000 });
        expect(restored.serial).toBe(refSerial);
        expect(exit.atNs).toBe(refExit.atNs);
      } finally {
        restored.close();
      }
    }, 300_000);

    it.skipIf(!hasTmux)('firmament tui --restore opens the snapshot paused; a file that is not one gets a clear error', async () => {
      const server = `fm-restore-test-${process.pid}`;
      const tmux = (...a: string[]): string => execFileSync('tmux', ['-L', server, ...a], { encoding: 'utf8' });
      const file = join(art(), 'mixed', 'boot-cut-short', 'attempt-1', 'snapshot.fmsnap');
      const report = JSON.parse(readFileSync(join(art(), 'mixed', 'boot-cut-short', 'attempt-1', 'report.json'), 'utf8')) as { postCodes: { hex: string; name: string }[] };
      const lastPost = report.postCodes[report.postCodes.length - 1]!;
      const waitFor = async (name: string, what: (s: string) => boolean, label: string): Promise<string> => {
        let last = '';
        for (let i = 0; i < 600; i++) {
          last = tmux('capture-pane', '-p', '-t', name);
          if (what(last)) return last;
          await new Promise((r) => setTimeout(r, 100));
        }
        throw new Error(`timed out waiting for ${label}; screen:\n${last}`);
      };
      try {
        tmux('new-session', '-d', '-s', 'ok', '-x', '120', '-y', '40', `cd ${ROOT} && LANG=C.UTF-8 node tools/firmament.mjs tui --restore '${file}'; echo TUI-EXIT $?; sleep 60`);
        const s = await waitFor('ok', (x) => x.includes('PAUSED'), 'the restored machine, paused');
        expect(s.trimEnd().split('\n').pop()).toContain(`POST ${lastPost.hex} ${lastPost.name}`);
        expect(s).toContain('1 Boot timeline');
        tmux('send-keys', '-t', 'ok', 'q');
        await waitFor('ok', (x) => x.includes('TUI-EXIT 0'), 'the TUI to quit');

        const notSnapshot = join(dir, 'not-a-snapshot.fmsnap');
        writeFileSync(notSnapshot, '{"serial": ""}\n');
        tmux('new-session', '-d', '-s', 'bad', '-x', '120', '-y', '20', `cd ${ROOT} && node tools/firmament.mjs tui --restore '${notSnapshot}'; echo TUI-EXIT $?; sleep 60`);
        const b = await waitFor('bad', (x) => x.includes('TUI-EXIT'), 'the error');
        expect(b.replace(/\n/g, '')).toContain('firmament: SnapshotFormatError: snapshot: offset 0: magic: expected FMSNAP02');
        expect(b).toContain('TUI-EXIT 2');
      } finally {
        spawnSync('tmux', ['-L', server, 'kill-server']);
      }
    }, 120_000);
  });
});
