/**
 * The QEMU stand-in for kvm-unit-tests' runner: its QEMU command line becomes `firmament run`
 * arguments, its probes get QEMU-shaped answers, and the exit status is isa-debug-exit's.
 * The suite itself is not needed here (docs/kvm-unit-tests.md runs it).
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { deviceHelpText, extraRunArgs, helpText, mapQemuArgs, parseQemuInitrd, parseQemuMem, parseQemuSmp } from '../../tools/kvm-unit-tests/qemu-shim.mjs';

const SHIM = path.resolve(import.meta.dirname, '../../tools/kvm-unit-tests/qemu-shim.mjs');
const GUESTS = path.resolve(import.meta.dirname, '../../images/build/guests');
const shim = (...args: string[]) => spawnSync('node', [SHIM, ...args], { encoding: 'utf8', timeout: 120_000 });

/** What x86/run builds for `smp = 2`, `extra_params = -append 'a b' -cpu qemu64,+x2apic` (ACCEL=tcg). */
const RUNNER_ARGV = ['--no-reboot', '-nodefaults', '-global', 'kvm-pit.lost_tick_policy=discard', '-device', 'pc-testdev', '-device', 'isa-debug-exit,iobase=0xf4,iosize=0x4', '-display', 'none', '-serial', 'stdio', '-machine', 'accel=tcg', '-kernel', 'x86/smptest.flat', '-smp', '2', '-append', 'a b', '-cpu', 'qemu64,+x2apic', '-initrd', '/tmp/tmp.env'];

describe('kvm-unit-tests QEMU shim: argv mapping', () => {
  it('maps the runner command line: -kernel, -smp, -append, QEMU default RAM, the env file as a Multiboot module named as QEMU names it', () => {
    const m = mapQemuArgs(RUNNER_ARGV);
    expect(m.kind).toBe('run');
    if (m.kind !== 'run') return;
    expect(m.kernel).toBe('x86/smptest.flat');
    expect(m.runArgs).toEqual(['x86/smptest.flat', '--mem', '128M', '--vcpus', '2', '--cmdline', 'a b', '--module', '/tmp/tmp.env,/tmp/tmp.env']);
    // Accepted but not honoured: said on stderr, as warnings (the runner passes a test whose stderr only warns).
    expect(m.warnings.join('\n')).toMatch(/pc-testdev is not emulated/);
    expect(m.warnings.join('\n')).toMatch(/-cpu qemu64,\+x2apic ignored/);
    expect(m.warnings.join('\n')).not.toMatch(/kvm-pit/);
  });

  it('takes QEMU spellings of -m, -smp and -initrd', () => {
    expect(parseQemuMem('256')).toBe(256);
    expect(parseQemuMem('1G')).toBe(1024);
    expect(parseQemuMem('2048M')).toBe(2048);
    expect(parseQemuMem('size=512')).toBe(512);
    expect(parseQemuSmp('4')).toBe(4);
    expect(parseQemuSmp('cpus=3,maxcpus=8')).toBe(3);
    expect(parseQemuSmp('2,sockets=1')).toBe(2);
    expect(parseQemuInitrd('/a/env')).toEqual([{ path: '/a/env', cmdline: '/a/env' }]);
    expect(parseQemuInitrd('/a/m1 x=1,/b/m,,2')).toEqual([
      { path: '/a/m1', cmdline: '/a/m1 x=1' },
      { path: '/b/m,2', cmdline: '/b/m,2' },
    ]);
    expect(mapQemuArgs(['--kernel', 'k', '-S', '-s'])).toMatchObject({ runArgs: ['k', '--mem', '128M', '--vcpus', '1', '--gdb', 'tcp::1234', '--paused'] });
    expect(mapQemuArgs(['-kernel', 'k'], { extraRunArgs: extraRunArgs({ FIRMAMENT_RUN_ARGS: ' --cpus 2  --clock virtual ' }) })).toMatchObject({ runArgs: ['k', '--mem', '128M', '--vcpus', '1', '--cpus', '2', '--clock', 'virtual'] });
  });

  it('refuses, with the option named, what firmament cannot honour', () => {
    expect(() => parseQemuMem('4g')).toThrow(/-m 4g: firmament run gives a VM at most 2048 MiB/);
    expect(() => parseQemuMem('lots')).toThrow(/-m lots: expected a size/);
    expect(() => parseQemuSmp('2,sockets=2,cores=1')).toThrow(/no topology/);
    // The runner's MAX_SMP probe greps for "SMP CPUs" and takes the last word.
    expect(() => parseQemuSmp('65')).toThrow(/Invalid SMP CPUs 65\. The max CPUs supported by machine 'firmament' is 64$/);
    expect(() => mapQemuArgs(['-kernel', 'k', '-device', 'intel-iommu'])).toThrow(/-device intel-iommu: firmament has no such device/);
    expect(() => mapQemuArgs(['-kernel', 'k', '-device', 'isa-debug-exit,iobase=0x501'])).toThrow(/iobase=0xf4 only/);
    expect(() => mapQemuArgs(['-kernel', 'k', '-M', 'q35'])).toThrow(/not q35/);
    expect(() => mapQemuArgs(['-kernel', 'k', '-cpu', 'host'])).toThrow(/requires KVM/);
    expect(() => mapQemuArgs(['-kernel', 'k', '-overcommit', 'cpu-pm=on'])).toThrow(/-overcommit: option not supported/);
    expect(() => mapQemuArgs(['-kernel'])).toThrow(/-kernel: requires an argument/);
    expect(() => mapQemuArgs(['-smp', '1'])).toThrow(/no -kernel/);
  });
});

describe('kvm-unit-tests QEMU shim: the probes and the exit status', () => {
  it('answers -help with a QEMU version line and -device ? in QEMU format', () => {
    // scripts/arch-run.bash: `$qemu --help | grep -q QEMU`, then `IFS='[ .]' read _ _ _ MAJOR MINOR MICRO` of the first line.
    expect(helpText().split('\n')[0]).toMatch(/^QEMU emulator version 7\.2\.0 /);
    // x86/run: `-device '?' | grep -F '"pc-testdev"'` decides the test-device options.
    expect(deviceHelpText()).toContain('name "pc-testdev"');
    expect(deviceHelpText()).toContain('name "isa-debug-exit"');
    expect(deviceHelpText()).not.toContain('"pci-testdev"');
    const r = shim('-device', '?');
    expect(r.status).toBe(0);
    expect(r.stdout).toBe(deviceHelpText());
  });

  it("reports a missing kernel the way QEMU does, so the runner's premature-failure probe runs the test", () => {
    // scripts/vmm.bash qemu_parse_premature_failure: "_NO_FILE_4Uhere_" and "could not load kernel" = no premature failure.
    const r = shim(...RUNNER_ARGV.map((a) => (a === 'x86/smptest.flat' ? '_NO_FILE_4Uhere_' : a)));
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/could not load kernel '_NO_FILE_4Uhere_'/);
    // An option we refuse comes first: the runner then skips the test with our message.
    const q = shim('-kernel', '_NO_FILE_4Uhere_', '-M', 'q35');
    expect(q.status).toBe(1);
    expect(q.stderr).toBe("qemu-system-x86_64: -machine q35: firmament's VM is a pc-like machine, not q35\n");
  });

  it('runs a Multiboot guest under firmament with its serial on stdout and the isa-debug-exit status', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'fm-kut-'));
    const env = path.join(dir, 'env');
    writeFileSync(env, 'TARGET=qemu\n');
    const r = shim('-nodefaults', '-device', 'isa-debug-exit,iobase=0xf4,iosize=0x4', '-serial', 'stdio', '-kernel', path.join(GUESTS, 'hello.elf'), '-initrd', env, '-append', 'x');
    expect(r.stderr).toBe('');
    expect(r.stdout).toMatch(/hello/i);
    expect(r.status).toBe(1); // (0 << 1) | 1, as QEMU
  });
});
