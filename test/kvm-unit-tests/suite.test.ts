/**
 * A few kvm-unit-tests x86 tests through the suite's own runner (x86/run) with the QEMU shim,
 * when a build exists in .cache/kvm-unit-tests (node tools/kvm-unit-tests/fetch-build.mjs;
 * docs/kvm-unit-tests.md). The suite is GPL and never part of this repository.
 */
import { spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = path.resolve(import.meta.dirname, '../..');
const KUT = path.join(ROOT, '.cache/kvm-unit-tests');
const SHIM = path.join(ROOT, 'tools/kvm-unit-tests/qemu-shim.mjs');
const built = existsSync(path.join(KUT, 'x86/dummy.flat'));
if (!built) console.warn(`kvm-unit-tests: skipped, no build in ${KUT} (node tools/kvm-unit-tests/fetch-build.mjs)`);

/** x86/run with the shim as $QEMU: the suite decides PASS (status 0) from isa-debug-exit and the report. */
function kut(flat: string, ...qemuArgs: string[]): { status: number | null; out: string } {
  // The runner reopens its stdout and stderr through /dev/fd, which fails on the socket pairs
  // Node gives a child: both go to files.
  const dir = mkdtempSync(path.join(tmpdir(), 'fm-kut-'));
  const [outFile, errFile] = [path.join(dir, 'stdout'), path.join(dir, 'stderr')];
  const fds = [openSync(outFile, 'w'), openSync(errFile, 'w')] as const;
  try {
    const r = spawnSync(path.join(KUT, 'x86/run'), [`x86/${flat}.flat`, ...qemuArgs], { cwd: KUT, timeout: 300_000, stdio: ['ignore', fds[0], fds[1]], env: { ...process.env, QEMU: SHIM, ACCEL: 'tcg', TIMEOUT: '240s' } });
    return { status: r.status, out: readFileSync(outFile, 'utf8') + readFileSync(errFile, 'utf8') };
  } finally {
    for (const fd of fds) closeSync(fd);
  }
}

describe.skipIf(!built)('kvm-unit-tests under firmament (the suite in .cache/kvm-unit-tests)', () => {
  // Each of these failed before this wave's fixes (docs/conformance.md has the table).
  it.each([
    ['idt_test', ['-smp', '1']],
    ['xsave', ['-smp', '1', '-cpu', 'max']],
    ['syscall', ['-smp', '1', '-cpu', 'Opteron_G1,vendor=AuthenticAMD']],
    ['smptest', ['-smp', '2']],
  ] as const)('%s passes', (flat, args) => {
    const r = kut(flat, ...args);
    expect(r.out).toMatch(/SUMMARY: \d+ tests(, \d+ skipped)?\s*$/m);
    expect(r.out).not.toMatch(/^FAIL: /m);
    expect(r.status, r.out).toBe(0);
  });
});
