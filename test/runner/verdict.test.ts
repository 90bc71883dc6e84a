/** Judging one run against its expectations: each mismatch is one message that says what differed. */
import { describe, expect, it } from 'vitest';
import { parseSuite } from '../../tools/test-runner/suite.js';
import { firstDifference, judge, type WorkerOutcome, type WorkerReport } from '../../tools/test-runner/verdict.js';

const spec = (body: string) => parseSuite(`[[test]]\nname = "t"\n${body}\n`, '/s/suite.toml', { checkFiles: false }).tests[0]!;
const outcome = (status: number, report: WorkerReport): WorkerOutcome => ({ status, signal: null, killed: false, report, reportError: null, stderr: '', durationMs: 1 });

describe('verdicts', () => {
  it('a golden transcript mismatch names the byte, the line, and both versions of that line', () => {
    expect(firstDifference('a\r\nhello: mem 639 KiB\r\nend\r\n', 'a\r\nhello: mem 640 KiB\r\nend\r\n')).toBe('first difference at byte 15 (line 2): expected "hello: mem 639 KiB\\r\\n", got "hello: mem 640 KiB\\r\\n"');
    expect(firstDifference('a\nb\n', 'a\n')).toBe('the output ends at byte 2 (line 2); expected more: "b\\n"');
    expect(firstDifference('a\n', 'a\nextra\n')).toBe('the output goes on past the expected end at byte 2: "extra\\n"');
    const t = spec('image = "g.elf"\nexpect.serial-file = "gold.txt"');
    const expectWithText = { ...t.expect, serialFile: { path: '/s/gold.txt', text: 'one\ntwo\n' } };
    expect(judge('run', expectWithText, outcome(1, { serial: 'one\ntwo\n', exit: { reason: 'debug-exit', code: 1 } }), 60)).toEqual({ kind: 'passed' });
    expect(judge('run', expectWithText, outcome(1, { serial: 'one\nTWO\n', exit: { reason: 'debug-exit', code: 1 } }), 60)).toEqual({ kind: 'failure', type: 'expectation', messages: ['serial differs from /s/gold.txt: first difference at byte 4 (line 2): expected "two\\n", got "TWO\\n"'] });
  });

  it('boot expectations: POST codes, containers, and the console of the machine and its guests', () => {
    const t = spec('boot = true\nexpect = { post = ["MEMTEST_PASS", "0x5F"], post-absent = ["MEMTEST_FAIL"], containers = { memtest = "pass", uart = "pass", extra = "pass" }, serial = ["guest says hi"] }');
    const report: WorkerReport = {
      serial: 'firmware\n',
      exit: { reason: 'halted', code: 0 },
      postCodes: [{ code: 0x33, hex: '0x33', name: 'MEMTEST_PASS', atMs: 1 }, { code: 0xe2, hex: '0xE2', name: 'MEMTEST_FAIL', atMs: 2.5 }],
      containers: [{ name: 'memtest', status: 'fail' }, { name: 'uart', status: 'pass' }],
      guests: [{ name: 'hello', serial: 'guest says hi\n', exit: { reason: 'debug-exit', code: 1 } }],
    };
    expect(judge('boot', t.expect, outcome(0, report), 60)).toEqual({
      kind: 'failure',
      type: 'expectation',
      messages: ['POST 0x5F HANDOFF never posted', 'POST 0xE2 MEMTEST_FAIL posted at 2.5 ms', 'container memtest: fail, expected pass', 'container extra: did not run (ran: memtest, uart)'],
    });
  });

  it('a timeout is a failure of type timeout, unless the test expects one (exit = 124)', () => {
    const report: WorkerReport = { serial: '', exit: { reason: 'timeout', code: 124, detail: 'no exit after 5000 ms' }, virtualMs: 12.5 };
    expect(judge('run', spec('image = "g.elf"').expect, outcome(124, report), 5)).toEqual({ kind: 'failure', type: 'timeout', messages: ['timed out: no exit within 5 s (12.5 ms of virtual time); expected exit status 1'] });
    expect(judge('run', spec('image = "g.elf"\nexpect.exit = 124').expect, outcome(124, report), 5)).toEqual({ kind: 'passed' });
    expect(judge('boot', spec('boot = true').expect, outcome(3, { exit: { reason: 'triple-fault', code: 0, detail: 'CPU 0: #GP in #DF' } }), 5)).toEqual({ kind: 'failure', type: 'expectation', messages: ['exit status 3 (triple-fault: CPU 0: #GP in #DF), expected 0'] });
  });
});
