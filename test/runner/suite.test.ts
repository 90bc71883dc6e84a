/**
 * Suite files of `firmament test`: what a good file means, and that every bad
 * one is refused with file:line and the field, before anything runs. Also the
 * fault matrix expansion and shard assignment, which need no machine.
 */
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseSuite, SuiteError } from '../../tools/test-runner/suite.js';
import { expandSuites, parseShard, selectShard } from '../../tools/test-runner/plan.js';

const ROOT = resolve(import.meta.dirname, '../..');
// Suites below live "in" test/fixtures/suites: image paths resolve from there.
const FILE = join(ROOT, 'test/fixtures/suites/inline.toml');
const HELLO = '../../../images/build/guests/hello.elf';
// Paths are checked against the disk only where a test says so (images may not be built in a unit test).
const parse = (src: string, checkFiles = false) => parseSuite(src, FILE, { checkFiles });

function errorOf(src: string, checkFiles = false): SuiteError {
  try {
    parse(src, checkFiles);
  } catch (e) {
    if (e instanceof SuiteError) return e;
    throw e;
  }
  throw new Error('the suite was accepted');
}

describe('suite files', () => {
  it('reads tests with [defaults] under them, resolving paths from the suite file', () => {
    const s = parse(`
suite = "demo"
[defaults]
timeout = 30
clock = "realtime"
expect.serial = ["ready"]

[[test]]
name = "hello"
image = "${HELLO}"
cmdline = "a=1"
vcpus = 2
mem = "32M"
retries = 2
expect = { exit = 5, serial-absent = ["panic"] }

[[test]]
name = "boot"
boot = true
guests = ["${HELLO}"]
faults = ["uart-dead"]
fault-matrix = ["none", ["pit-stuck", "cmos-checksum"]]
timeout = 90
[test.expect]
post = ["MEMTEST_PASS", "0x5f", 0x40]
post-absent = ["memtest_fail"]
containers = { memtest = "pass", cmos = "fixed" }
`);
    expect(s.name).toBe('demo');
    const [hello, boot] = s.tests;
    expect(hello).toMatchObject({ name: 'hello', kind: 'run', image: resolve(ROOT, 'images/build/guests/hello.elf'), cmdline: 'a=1', vcpus: 2, memBytes: 32 << 20, retries: 2, timeoutS: 30, clock: 'realtime', line: 8 });
    expect(hello!.expect.exit).toBe(5);
    expect(hello!.expect.serial.map((r) => r.source)).toEqual(['ready']);
    expect(hello!.expect.serialAbsent.map((r) => r.source)).toEqual(['panic']);
    expect(boot).toMatchObject({ kind: 'boot', guests: [resolve(ROOT, 'images/build/guests/hello.elf')], faults: ['uart-dead'], faultMatrix: [[], ['pit-stuck', 'cmos-checksum']], timeoutS: 90, line: 17 });
    // Default exit: boot succeeds with 0, a guest that writes 0 to isa-debug-exit exits 1 (as under QEMU).
    expect(boot!.expect.exit).toBe(0);
    expect(boot!.expect.post.map((p) => p.label)).toEqual(['0x33 MEMTEST_PASS', '0x5F HANDOFF', '0x40 PIT_CHECK']);
    expect(boot!.expect.postAbsent.map((p) => p.code)).toEqual([0xe2]);
    expect(boot!.expect.containers).toEqual({ memtest: 'pass', cmos: 'fixed' });
    expect(parse(`[[test]]\nname = "x"\nimage = "${HELLO}"\n`).tests[0]!.expect.exit).toBe(1);
  });

  it('names the line and the field of every mistake', () => {
    const t = (body: string): string => `[[test]]\nname = "t"\nimage = "${HELLO}"\n${body}\n`;
    const cases: [string, RegExp][] = [
      ['[[test]]\nname = "t"\nimage = "unterminated\n', /inline\.toml:3: column 22: TOML syntax: Unterminated string/],
      [t('timout = 5'), /inline\.toml:4: test\[0\]\.timout: unknown key \(did you mean 'timeout'\?\)/],
      [t('timeout = "5s"'), /inline\.toml:4: test 't': timeout: expected seconds .*got string "5s"/],
      [t('retries = -1'), /inline\.toml:4: test 't': retries: expected a whole number from 0 to 10, got number -1/],
      [t('clock = "fast"'), /inline\.toml:4: test 't': clock: expected one of "virtual", "realtime", got string "fast"/],
      [t('mem = "64Q"'), /inline\.toml:4: test 't': mem: size '64Q' is not a size/],
      [t('\n[test.expect]\nserial = ["ok", "(unclosed"]'), /inline\.toml:6: test 't': expect\.serial\[1\]: bad regular expression \/\(unclosed\/: Unterminated group$/],
      [t('expect = { exitt = 1 }'), /inline\.toml:4: test 't': expect\.exitt: unknown key \(did you mean 'exit'\?\)/],
      [t('expect.serial = "one"'), /inline\.toml:4: test 't': expect\.serial: expected a list \[\.\.\.\], got string "one"/],
      [t('faults = ["uart-dead"]'), /inline\.toml:4: test 't': faults: only for boot tests/],
      [t('expect.post = ["HANDOFF"]'), /inline\.toml:4: test 't': expect\.post: only for boot tests/],
      [t('boot = true'), /inline\.toml:4: test 't': boot: a test has either 'image' .* or 'boot = true'/],
      ['[[test]]\nname = "b"\nboot = true\nfaults = ["ram:0x1000+12"]\n', /inline\.toml:4: test 'b': faults\[0\]: --fault ram:0x1000\+12: address and length must be 4 KiB aligned/],
      ['[[test]]\nname = "b"\nboot = true\nfault-matrix = []\n', /inline\.toml:4: test 'b': fault-matrix: an empty matrix runs nothing/],
      ['[[test]]\nname = "b"\nboot = true\nfault-matrix = ["none", "uart-dead", "uart-dead"]\n', /inline\.toml:4: test 'b': fault-matrix\[2\]: the fault set 'uart-dead' is listed twice/],
      ['[[test]]\nname = "b"\nboot = true\nexpect.post = ["MEMTEST_PAS"]\n', /inline\.toml:4: test 'b': expect\.post\[0\]: unknown POST code name 'MEMTEST_PAS'/],
      ['[[test]]\nname = "b"\nboot = true\nexpect.post = [0x99]\n', /inline\.toml:4: test 'b': expect\.post\[0\]: 0x99 is not a POST code/],
      ['[[test]]\nname = "b"\nboot = true\n\n[test.expect.containers]\nmemtest = "passed"\n', /inline\.toml:6: test 'b': expect\.containers\.memtest: expected one of "pass", "fail", "fixed", "rejected", "timeout"/],
      ['[[test]]\nname = "b"\nboot = true\ncmdline = "x"\n', /inline\.toml:4: test 'b': cmdline: only for image tests/],
      [`[[test]]\nimage = "${HELLO}"\n`, /inline\.toml:1: test\[0\]\.name: every test needs a name/],
      [`${t('')}[[test]]\nname = "t"\nimage = "${HELLO}"\n`, /inline\.toml:6: test 't': duplicate name \(first used at line 1\)/],
      ['[[test]]\nname = "n"\n', /inline\.toml:1: test 'n': needs 'image' .* or 'boot = true'/],
      ['suite = "x"\n', /inline\.toml:1: test: the suite has no tests/],
      ['tests = 1\n[[test]]\nname = "x"\nboot = true\n', /inline\.toml:1: tests: unknown key \(did you mean 'test'\?\)/],
      ['[defaults]\ntimeout = 0\n[[test]]\nname = "x"\nboot = true\n', /inline\.toml:2: defaults\.timeout: expected seconds/],
      ['[defaults]\nname = "x"\n[[test]]\nname = "x"\nboot = true\n', /inline\.toml:2: defaults\.name: a name belongs to one test/],
    ];
    for (const [src, re] of cases) expect(errorOf(src).message).toMatch(re);
  });

  it('reads the same suite from JSON (comments allowed), with file:line in every error', () => {
    const json = (src: string): ReturnType<typeof parse> => parseSuite(src, join(ROOT, 'test/fixtures/suites/inline.json'), { checkFiles: false });
    const s = json(`{
  // a comment, as in tsconfig.json
  "defaults": { "timeout": 30, "expect": { "serial": ["ready"] } },
  "test": [
    { "name": "hello", "image": "${HELLO}", "vcpus": 2, "mem": "32M",
      "expect": { "exit": 5, "serial-absent": ["panic"] } },
    { "name": "boot", "boot": true, "fault-matrix": ["none", ["pit-stuck", "cmos-checksum"]],
      "expect": { "post": ["MEMTEST_PASS", 95], "containers": { "cmos": "fixed" } } }
  ]
}`);
    expect(s.name).toBe('inline');
    expect(s.tests[0]).toMatchObject({ name: 'hello', kind: 'run', image: resolve(ROOT, 'images/build/guests/hello.elf'), vcpus: 2, memBytes: 32 << 20, timeoutS: 30, line: 5 });
    expect(s.tests[0]!.expect.serial.map((r) => r.source)).toEqual(['ready']);
    expect(s.tests[1]).toMatchObject({ kind: 'boot', faultMatrix: [[], ['pit-stuck', 'cmos-checksum']], line: 7 });
    expect(s.tests[1]!.expect.post.map((p) => p.label)).toEqual(['0x33 MEMTEST_PASS', '0x5F HANDOFF']);
    const err = (src: string): string => {
      try {
        json(src);
      } catch (e) {
        if (e instanceof SuiteError) return e.message;
        throw e;
      }
      throw new Error('the suite was accepted');
    };
    expect(err('{\n  "test": [\n    { "name": "t", "image": "x.elf",\n      "timout": 5 }\n  ]\n}')).toMatch(/inline\.json:4: test\[0\]\.timout: unknown key \(did you mean 'timeout'\?\)/);
    expect(err('{\n  "test": [\n    { "name": "t", "image": "x.elf",\n      "expect": { "serial": ["(unclosed"] } }\n  ]\n}')).toMatch(/inline\.json:4: test 't': expect\.serial\[0\]: bad regular expression/);
    expect(err('{\n  "test": [\n    { "name": "t" "image": "x.elf" }\n  ]\n}')).toMatch(/inline\.json:3: column \d+: JSON syntax: CommaExpected/);
    expect(err('[1, 2]')).toMatch(/inline\.json:1: suite: expected a JSON object/);
    expect(err('')).toMatch(/inline\.json:1: .*JSON syntax/);
  });

  it('refuses an image or golden file that is not there, naming the path as written', () => {
    expect(errorOf('[[test]]\nname = "m"\nimage = "no/such.elf"\n', true).message).toMatch(/inline\.toml:3: test 'm': image: no such file: no\/such\.elf \(.*test\/fixtures\/suites\/no\/such\.elf; paths are relative to the suite file\)/);
    expect(errorOf(`[[test]]\nname = "m"\nimage = "${HELLO}"\n[test.expect]\nexit = 1\nserial-file = "gone.txt"\n`, true).message).toMatch(/inline\.toml:6: test 'm': expect\.serial-file: no such file: gone\.txt/);
  });

  it('the CLI reports a bad suite file with exit status 2 and the file:line message, and runs nothing', () => {
    const dir = mkdtempSync(join(tmpdir(), 'fm-suite-'));
    const file = join(dir, 'bad.toml');
    writeFileSync(file, '[[test]]\nname = "x"\nboot = true\nexpect.serial = ["[z-a]"]\n');
    const r = spawnSync(process.execPath, [join(ROOT, 'tools/firmament.mjs'), 'test', file, '--artifacts', join(dir, 'art')], { encoding: 'utf8' });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(new RegExp(`SuiteError: ${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:4: test 'x': expect\\.serial\\[0\\]: bad regular expression /\\[z-a\\]/`));
    expect(r.stdout).toBe('');
  });
});

describe('fault matrix and shards', () => {
  const suite = parse(`
[[test]]
name = "guest"
image = "${HELLO}"
[[test]]
name = "plain"
boot = true
[[test]]
name = "matrix"
boot = true
faults = ["pit-stuck"]
fault-matrix = ["none", "uart-dead", ["cmos-checksum", "ram:0x3000000+0x1000"]]
`);

  it('a matrix test runs once per fault set, each its own test id', () => {
    const runs = expandSuites([suite]);
    expect(runs.map((r) => r.id)).toEqual(['guest', 'plain', 'matrix[pit-stuck]', 'matrix[pit-stuck+uart-dead]', 'matrix[pit-stuck+cmos-checksum+ram:0x3000000+0x1000]']);
    expect(runs[4]!.faults).toEqual(['pit-stuck', 'cmos-checksum', 'ram:0x3000000+0x1000']);
  });

  it('--fault multiplies every boot test (not image tests) by each fault', () => {
    const small = parse(`
[[test]]
name = "guest"
image = "${HELLO}"
[[test]]
name = "plain"
boot = true
[[test]]
name = "matrix"
boot = true
fault-matrix = ["none", "cmos-checksum"]
`);
    const runs = expandSuites([small], ['none', 'uart-dead']);
    expect(runs.map((r) => r.id)).toEqual(['guest', 'plain[none]', 'plain[uart-dead]', 'matrix[none]', 'matrix[uart-dead]', 'matrix[cmos-checksum]', 'matrix[cmos-checksum+uart-dead]']);
    expect(runs.map((r) => r.faults)).toEqual([[], [], ['uart-dead'], [], ['uart-dead'], ['cmos-checksum'], ['cmos-checksum', 'uart-dead']]);
  });

  it('refuses a --fault that makes two runs of one test identical', () => {
    expect(() => expandSuites([suite], ['uart-dead'])).toThrow(/test 'matrix': the run 'matrix\[pit-stuck\+uart-dead\]' comes out twice/);
  });

  it('shards partition the expanded list, balanced to within one run', () => {
    const runs = expandSuites([suite], ['none', 'ram:0x4000000+0x1000']).map((r) => r.id);
    expect(runs).toHaveLength(1 + 2 + 3 * 2);
    for (const m of [1, 2, 3, 4, 7]) {
      const shards = Array.from({ length: m }, (_, k) => selectShard(runs, { index: k + 1, count: m }));
      expect(shards.flat().sort()).toEqual([...runs].sort());
      expect(new Set(shards.flat()).size).toBe(runs.length);
      const sizes = shards.map((s) => s.length);
      expect(Math.max(...sizes) - Math.min(...sizes)).toBeLessThanOrEqual(1);
    }
    expect(parseShard('2/4')).toEqual({ index: 2, count: 4 });
    for (const bad of ['0/4', '5/4', '1/0', '1', 'a/b']) expect(() => parseShard(bad)).toThrow(/--shard .*expected K\/M/);
  });
});
