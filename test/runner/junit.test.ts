/**
 * JUnit reports of `firmament test` against the Ant/Jenkins JUnit schema
 * (test/fixtures/junit.xsd, checked with xmllint), read back, and merged
 * from shards. Results here are built by hand: the reports of real runs are
 * checked in firmament-test.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseSuite } from '../../tools/test-runner/suite.js';
import { expandSuites, selectShard, type PlannedTest } from '../../tools/test-runner/plan.js';
import type { TestResult } from '../../tools/test-runner/runner.js';
import { junitSuites, junitXml, mergeJunit, parseJunit, JunitError } from '../../tools/test-runner/junit.js';

const ROOT = resolve(import.meta.dirname, '../..');
const XSD = join(ROOT, 'test/fixtures/junit.xsd');
const hasXmllint = spawnSync('xmllint', ['--version']).status === 0;
const dir = mkdtempSync(join(tmpdir(), 'fm-junit-'));

/** xmllint's verdict on a report: '' when it validates, its complaints otherwise. */
function schemaErrors(xml: string, name = 'report.xml'): string {
  const file = join(dir, name);
  writeFileSync(file, xml);
  const r = spawnSync('xmllint', ['--noout', '--schema', XSD, file], { encoding: 'utf8' });
  return r.status === 0 ? '' : r.stderr;
}

const suite = parseSuite(
  `
suite = "unit"
[[test]]
name = "ok"
image = "a.elf"
[[test]]
name = "flaky"
image = "a.elf"
retries = 2
[[test]]
name = "bad <&> \\"quoted\\""
image = "a.elf"
[[test]]
name = "crashed"
image = "a.elf"
[[test]]
name = "later"
image = "a.elf"
skip = "needs a fix first"
[[test]]
name = "boot"
boot = true
fault-matrix = ["none", "uart-dead"]
`,
  '/suites/unit.toml',
  { checkFiles: false },
);
const planned = expandSuites([suite]);

function result(t: PlannedTest): TestResult {
  const passed = { verdict: { kind: 'passed' as const }, durationMs: 1500, status: 1, command: ['firmament', 'run', 'a.elf'], console: 'hello\r\n\x1b[1mbold\x1b[0m and a NUL \x00 byte\r\n', artifacts: null };
  const failed = (messages: string[]) => ({ verdict: { kind: 'failure' as const, type: 'expectation', messages }, durationMs: 2000, status: 3, command: ['firmament', 'run', 'a.elf'], console: 'partial output <tag> & more\n', artifacts: `/art/unit/${t.id}/attempt-1` });
  switch (t.spec.name) {
    case 'flaky':
      return { test: t, outcome: 'passed', flaky: true, attempts: [failed(['exit status 3 (triple-fault), expected 1']), passed], durationMs: 3500 };
    case 'bad <&> "quoted"':
      return { test: t, outcome: 'failed', flaky: false, attempts: [failed(['exit status 3, expected 1', 'serial: /ok/ never appeared'])], durationMs: 2000 };
    case 'crashed':
      return { test: t, outcome: 'error', flaky: false, attempts: [{ verdict: { kind: 'error', type: 'worker', messages: ['the worker printed no JSON report (killed by SIGSEGV): nothing on stdout'] }, durationMs: 100, status: null, command: ['firmament'], console: '', artifacts: '/art/x' }], durationMs: 100 };
    case 'later':
      return { test: t, outcome: 'skipped', flaky: false, attempts: [], durationMs: 0 };
    default:
      return { test: t, outcome: 'passed', flaky: false, attempts: [passed], durationMs: 1500 };
  }
}

const meta = { startedAt: new Date(Date.UTC(2026, 0, 2, 3, 4, 5, 678)), shard: null, wallMs: 4321 };

describe.skipIf(!hasXmllint)('JUnit reports', () => {
  const results = planned.map(result);
  const xml = junitXml(junitSuites(results, [suite], meta));

  it('validate against the JUnit schema, with every test case and the right counts', () => {
    expect(schemaErrors(xml)).toBe('');
    expect(xml).toContain('<testsuites name="firmament test" tests="7" failures="1" errors="1" skipped="1" time="4.321">');
    expect(xml).toContain('<testsuite name="unit" tests="7" failures="1" errors="1" skipped="1" time="4.321" timestamp="2026-01-02T03:04:05"');
    const [read] = parseJunit(xml, 'report.xml');
    expect(read!.cases.map((c) => c.name)).toEqual(['ok', 'flaky', 'bad <&> "quoted"', 'crashed', 'later', 'boot[none]', 'boot[uart-dead]']);
    expect(read!.cases.every((c) => c.classname === 'firmament.unit')).toBe(true);
    expect(read!.properties).toEqual([['suite-file', '/suites/unit.toml']]);
  });

  it('failures carry their first message as the message, every message and the artefacts in the body', () => {
    const [read] = parseJunit(xml, 'report.xml');
    const bad = read!.cases.find((c) => c.name === 'bad <&> "quoted"')!;
    expect(bad.outcome).toMatchObject({ kind: 'failure', type: 'expectation', message: 'exit status 3, expected 1' });
    expect(bad.outcome.kind === 'failure' && bad.outcome.text).toBe('exit status 3, expected 1\nserial: /ok/ never appeared\n\ncommand: firmament run a.elf\nartefacts: /art/unit/bad <&> "quoted"/attempt-1');
    expect(bad.systemOut).toBe('partial output <tag> & more\n');
    expect(read!.cases.find((c) => c.name === 'crashed')!.outcome).toMatchObject({ kind: 'error', type: 'worker', message: expect.stringContaining('killed by SIGSEGV') });
    expect(read!.cases.find((c) => c.name === 'later')!.outcome).toEqual({ kind: 'skipped', message: 'needs a fix first' });
    const flaky = read!.cases.find((c) => c.name === 'flaky')!;
    expect(flaky.outcome).toEqual({ kind: 'passed' });
    expect(flaky.timeS).toBe(3.5);
    expect(flaky.systemErr).toBe('attempt 1: failure: exit status 3 (triple-fault), expected 1 (2 s), artefacts in /art/unit/flaky/attempt-1\nattempt 2: passed (1.5 s)');
    // Control characters XML cannot hold are spelled out; the rest of the log is kept as it was (CR LF reads back as LF).
    expect(read!.cases[0]!.systemOut).toBe('hello\n\\x1b[1mbold\\x1b[0m and a NUL \\x00 byte\n');
  });

  it('shards merge into the report of the whole suite', () => {
    const reports = [1, 2, 3].map((k) => {
      const part = selectShard(results, { index: k, count: 3 });
      const text = junitXml(junitSuites(part, [suite], { ...meta, shard: `${k}/3`, wallMs: 1000 * k }));
      expect(schemaErrors(text, `shard${k}.xml`)).toBe('');
      return { file: `shard${k}.xml`, suites: parseJunit(text, `shard${k}.xml`) };
    });
    const merged = junitXml(mergeJunit(reports));
    expect(schemaErrors(merged, 'merged.xml')).toBe('');
    const [whole] = parseJunit(xml, 'whole.xml');
    const [m] = parseJunit(merged, 'merged.xml');
    const key = (c: { classname: string; name: string }) => `${c.classname} ${c.name}`;
    expect(m!.cases.map(key).sort()).toEqual(whole!.cases.map(key).sort());
    for (const c of whole!.cases) expect(m!.cases.find((x) => key(x) === key(c))).toEqual(c);
    expect(m!.timeS).toBe(6);
    expect(m!.properties).toEqual([['suite-file', '/suites/unit.toml'], ['merged-from', '3 reports']]);
    expect(merged).toContain('<testsuite name="unit" tests="7" failures="1" errors="1" skipped="1" time="6.000"');
    // The same shard twice is a mistake in the CI set-up, not a bigger suite.
    expect(() => mergeJunit([reports[0]!, reports[1]!, reports[0]!])).toThrow(/test case 'firmament\.unit ok' is in both shard1\.xml and shard1\.xml/);
  });

  it('merging refuses files that are not JUnit reports, naming the file and where', () => {
    expect(() => parseJunit('<testsuites><testsuite name="a"></testsuites>', 'broken.xml')).toThrow(JunitError);
    expect(() => parseJunit('<testsuites><testsuite name="a"></testsuites>', 'broken.xml')).toThrow(/^broken\.xml:1:\d+: not well-formed XML: /);
    expect(() => parseJunit('<html/>', 'page.xml')).toThrow(/page\.xml: not a JUnit report: the root element must be <testsuites> or <testsuite>/);
    expect(() => parseJunit('<testsuite name="a"><testcase classname="x" time="1"/></testsuite>', 'noname.xml')).toThrow(/noname\.xml: testsuite 'a', testcase 1 has no name attribute/);
    expect(() => parseJunit('<testsuite name="a"><testcase name="t" time="soon"/></testsuite>', 'time.xml')).toThrow(/time\.xml: testcase 't': time="soon" is not a number of seconds/);
  });

  it('the schema itself rejects what it should (a case with two outcomes, a negative time)', () => {
    expect(schemaErrors('<testsuites><testsuite name="a" tests="1" failures="1" errors="0" time="1"><testcase name="t" classname="c" time="1"><failure/><error/></testcase></testsuite></testsuites>')).toMatch(/Element 'error': This element is not expected/);
    expect(schemaErrors('<testsuites><testsuite name="a" tests="0" failures="0" errors="0" time="-1"/></testsuites>')).toMatch(/minInclusive/);
  });
});
