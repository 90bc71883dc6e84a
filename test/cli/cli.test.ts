/** The CLI as CI pipelines use it: exit statuses, JSON on stdout, clear errors on bad input. */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const CLI = path.resolve(import.meta.dirname, '../../tools/firmament.mjs');
const GUESTS = path.resolve(import.meta.dirname, '../../images/build/guests');
const cli = (...args: string[]) => spawnSync('node', [CLI, ...args], { encoding: 'utf8', timeout: 120_000 });

describe('firmament CLI', () => {
  it('--help documents every command', () => {
    const r = cli('--help');
    expect(r.status).toBe(0);
    for (const c of ['boot', 'run', 'translate', 'containers', 'bench', 'tui', 'inspect', 'test']) expect(r.stdout).toMatch(new RegExp(`^  ${c} `, 'm'));
    for (const o of ['--fault', '--guest', '--registry', '--json', '--timeout', '--cpus', '--mem']) expect(r.stdout).toContain(o);
  });

  it('run exits like QEMU with isa-debug-exit and prints JSON with exit counts', () => {
    const r = cli('run', path.join(GUESTS, 'hello.elf'), '--clock', 'virtual', '--json');
    expect(r.status).toBe(1); // (0 << 1) | 1
    const doc = JSON.parse(r.stdout) as { exit: { reason: string }; guests: { name: string; exits: Record<string, number> }[]; host: { wallMs: number; cpuMs: number } };
    expect(doc.exit.reason).toBe('debug-exit');
    expect(doc.guests[0]!.name).toBe('hello');
    expect(doc.guests[0]!.exits['io']).toBeGreaterThan(0);
    // What the run cost the host (CI budgets, the idle bench): present and plausible, never a fixed number.
    expect(doc.host.wallMs).toBeGreaterThan(0);
    expect(doc.host.cpuMs).toBeGreaterThan(0);
  });

  it('a malformed guest image is a clear error naming file, offset and field, never a crash', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'fm-cli-'));
    const bad = path.join(dir, 'broken.elf');
    writeFileSync(bad, Buffer.from('\x7fELF this is not really an ELF file'));
    const r = cli('run', bad, '--clock', 'virtual');
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/broken\.elf: offset 0x[0-9a-f]+: /);
    expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace for bad input
  });

  it('bad options are usage errors (status 2) that name the option', () => {
    const r = cli('boot', '--fault', 'disk-on-fire');
    expect(r.status).toBe(2);
    expect(r.stderr).toContain("unknown --fault 'disk-on-fire'");
    const m = cli('boot', '--mem', 'lots');
    expect(m.status).toBe(2);
    expect(m.stderr).toContain("--mem 'lots' is not a size");
  });

  it('boot --json with a timeout reports reason "timeout" and exits 124', () => {
    const r = cli('boot', '--json', '--timeout', '0.2');
    expect(r.status).toBe(124);
    expect(JSON.parse(r.stdout).exit.reason).toBe('timeout');
  });
});

describe('JUnit report', () => {
  it('boot --junit names a failing container and a clean handoff as test cases', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'fm-junit-'));
    const file = path.join(dir, 'boot.xml');
    const r = cli('boot', '--clock', 'virtual', '--fault', 'uart-dead', '--junit', file);
    expect(r.status).toBe(0); // the boot completes; JUnit carries the failures
    const xml = readFileSync(file, 'utf8');
    expect(xml).toMatch(/<testsuite name="firmament boot" tests="7" failures="2"/);
    expect(xml).toMatch(/<testcase name="POST" [^>]*><failure message="0xE0 UART_DEAD \(error\)">/);
    expect(xml).toMatch(/<testcase name="container uart" [^>]*><failure message="uart: fail">/);
    expect(xml).toMatch(/<testcase name="handoff" [^>]*><\/testcase>|<testcase name="handoff" [^>]*\/?>(?!<failure)/);
  });
});
