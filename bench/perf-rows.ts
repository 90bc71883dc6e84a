/**
 * Bench rows for issue 13 (docs/performance.md), side by side with QEMU TCG in the same run:
 * whole-process start-up of `run hello.elf` (wall, CPU, peak RSS), the memory-bound sieve guest
 * (instructions/s and instructions per TLB fill) and the host CPU of 8 VMs halted with no timer.
 * Medians of several runs with their spread (min-max): this machine is shared and noisy.
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { createGuestMachine } from '../vmm/run-guests.js';
import { PROJECT_ROOT } from '../machine/cpu/unicorn/locate.js';
import { QEMU_ARGS, runMeasured, runQemu, type PeerRun } from './qemu.js';
import { median, type BenchRow } from './row.js';

const MiB = 1024 * 1024;
const CLI = join(PROJECT_ROOT, 'tools/firmament.mjs');

const spread = (xs: number[], digits = 0): string => {
  const s = xs.filter(Number.isFinite);
  return s.length === 0 ? 'n/a' : `${Math.min(...s).toFixed(digits)}-${Math.max(...s).toFixed(digits)}`;
};
const fmt = (n: number, unit: string, digits = 1): string => (Number.isFinite(n) ? `${n.toFixed(digits)} ${unit}` : 'n/a');
const ratio = (a: number, b: number): string => (Number.isFinite(a) && Number.isFinite(b) && b > 0 ? (a / b).toFixed(2) : 'n/a');

/** Peak RSS in KiB of a command, from GNU time (Debian package `time`); NaN without it. */
function peakRssKiB(command: string[]): number {
  const r = spawnSync('/usr/bin/time', ['-f', '@@RSS %M', ...command], { encoding: 'utf8', timeout: 120_000 });
  const m = /@@RSS (\d+)/.exec(r.stderr ?? '');
  return m ? Number(m[1]) : NaN;
}

/**
 * dist/ (the compiled CLI) built from the sources on disk: a stale one makes `firmament` fall back
 * to transpiling with tsx, which is not what users of an installed checkout run.
 */
async function freshDist(): Promise<string> {
  const tools = (await import(join(PROJECT_ROOT, 'tools/build-js.mjs'))) as { freshDistEntry(): { entry: string | null }; buildJs(o: { quiet: boolean }): Promise<unknown> };
  if (tools.freshDistEntry().entry) return 'compiled dist/';
  await tools.buildJs({ quiet: true });
  return tools.freshDistEntry().entry ? 'compiled dist/ (rebuilt for the bench)' : 'tsx (dist/ could not be built)';
}

/** `firmament run hello.elf` vs `qemu -kernel hello.elf`, whole processes, `pairs` alternating pairs. */
export async function startupRows(hello: string, qemu: boolean, pairs = 5): Promise<BenchRow[]> {
  const how = await freshDist();
  const ours: PeerRun[] = [];
  const theirs: PeerRun[] = [];
  const oursRss: number[] = [];
  const theirsRss: number[] = [];
  const fm = ['node', CLI, 'run', hello];
  const qm = ['qemu-system-x86_64', '-kernel', hello, ...QEMU_ARGS];
  for (let i = 0; i < pairs; i++) {
    ours.push(runMeasured(fm));
    oursRss.push(peakRssKiB(fm));
    if (qemu) {
      theirs.push(runMeasured(qm));
      theirsRss.push(peakRssKiB(qm));
    }
  }
  const w = ours.map((r) => r.wallMs);
  const c = ours.map((r) => r.cpuMs);
  const qw = theirs.map((r) => r.wallMs);
  const qc = theirs.map((r) => r.cpuMs);
  const rss = oursRss.map((k) => k / 1024);
  const qrss = theirsRss.map((k) => k / 1024);
  const note = `${how}; median of ${pairs} alternating pairs, spread ours ${'%s'} / QEMU ${'%q'}`;
  return [
    { metric: 'run hello.elf, whole process, wall', firmament: fmt(median(w), 'ms', 0), qemu: fmt(median(qw), 'ms', 0), ratio: ratio(median(w), median(qw)), note: note.replace('%s', `${spread(w)} ms`).replace('%q', `${spread(qw)} ms`) },
    { metric: 'run hello.elf, whole process, CPU', firmament: fmt(median(c), 'ms', 0), qemu: fmt(median(qc), 'ms', 0), ratio: ratio(median(c), median(qc)), note: note.replace('%s', `${spread(c)} ms`).replace('%q', `${spread(qc)} ms`) + ' (user+sys, all threads, 10 ms steps)' },
    { metric: 'run hello.elf, peak RSS', firmament: fmt(median(rss), 'MiB', 0), qemu: fmt(median(qrss), 'MiB', 0), ratio: ratio(median(rss), median(qrss)), note: Number.isFinite(median(rss)) ? `GNU time %M; spread ours ${spread(rss)} / QEMU ${spread(qrss)} MiB` : 'needs /usr/bin/time (Debian package time)' },
  ];
}

/** The sieve guest in this process: instructions (counted exactly in a separate run), wall, CPU, TLB fills. */
async function sieveRun(sieve: string, cmdline: string, countInstructions: boolean): Promise<{ wallMs: number; cpuMs: number; instructions: number; fills: { native: number; js: number }; serial: string }> {
  const { machine: m, hypervisor, vms } = createGuestMachine([{ path: sieve, memBytes: 64 * MiB, vcpus: 1, cmdline }], { pcpus: 1, pace: 'realtime' });
  const counter = Buffer.alloc(8);
  if (countInstructions) vms[0]!.vcpus[0]!.cpu.engine.countInstructions(counter);
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  await m.run({ timeoutMs: 600_000 });
  const wallMs = performance.now() - t0;
  const cpu = process.cpuUsage(c0);
  const fills = m.hostCpus[0]!.nativeTlb.counts();
  const serial = vms[0]!.serial;
  hypervisor.close();
  m.close();
  return { wallMs, cpuMs: (cpu.user + cpu.system) / 1000, instructions: Number(counter.readBigUInt64LE(0)), fills, serial };
}

export async function sieveRows(sieve: string, hello: string, qemu: boolean, runs = 3): Promise<BenchRow[]> {
  const cmdline = 'mib=32 passes=2';
  const counted = await sieveRun(sieve, cmdline, true);
  const ours = [];
  for (let i = 0; i < runs; i++) ours.push(await sieveRun(sieve, cmdline, false));
  const n = counted.instructions;
  const ips = ours.map((r) => n / (r.wallMs / 1000) / 1e6);
  const cpuIps = ours.map((r) => n / (r.cpuMs / 1000) / 1e6);
  const fills = ours[0]!.fills.native + ours[0]!.fills.js;
  let qIps: number[] = [];
  let qCpuIps: number[] = [];
  if (qemu) {
    for (let i = 0; i < runs; i++) {
      const base = runQemu(['-kernel', hello, ...QEMU_ARGS]);
      const q = runQemu(['-kernel', sieve, '-append', cmdline, ...QEMU_ARGS], 600_000);
      qIps.push(n / (Math.max(1, q.wallMs - base.wallMs) / 1000) / 1e6);
      qCpuIps.push(n / (Math.max(10, q.cpuMs - base.cpuMs) / 1000) / 1e6);
    }
  }
  const same = ours.every((r) => r.serial === counted.serial);
  return [
    {
      metric: 'sieve guest (memory-bound), instructions/s',
      firmament: fmt(median(ips), 'M/s'),
      qemu: fmt(median(qIps), 'M/s'),
      ratio: ratio(median(ips), median(qIps)),
      note: `${cmdline}: ${(n / 1e6).toFixed(0)} M instructions; wall, median of ${runs} (ours ${spread(ips)}, QEMU ${spread(qIps)} M/s); by CPU time ours ${fmt(median(cpuIps), 'M/s')} vs QEMU ${fmt(median(qCpuIps), 'M/s')}${same ? '' : '; TRANSCRIPTS DIFFER'}`,
    },
    {
      metric: 'sieve guest, instructions per TLB fill',
      firmament: Number.isFinite(n / fills) && fills > 0 ? (n / fills).toFixed(0) : 'n/a',
      qemu: 'n/a',
      ratio: 'n/a',
      note: `${fills} fills, ${ours[0]!.fills.native} answered in C (native TLB fill), ${ours[0]!.fills.js} in TypeScript`,
    },
  ];
}

/** Host CPU of `vms` VMs halted with no timer (timer guest halt=1) in one machine, over `seconds`. */
export async function haltedVmsRows(timer: string, qemu: boolean, vms = 8, seconds = 3): Promise<BenchRow[]> {
  const specs = Array.from({ length: vms }, () => ({ path: timer, memBytes: 16 * MiB, vcpus: 1, cmdline: 'halt=1' }));
  const { machine: m, hypervisor } = createGuestMachine(specs, { pcpus: 1, pace: 'realtime' });
  // As with a monitor attached: input could still wake them, so the machine idles instead of ending.
  m.interactive = true;
  const done = m.run({ timeoutMs: (seconds + 1) * 1000 });
  await new Promise((r) => setTimeout(r, 1000)); // boot and settle: only the halted phase counts
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  await done;
  const cpu = process.cpuUsage(c0);
  const share = ((cpu.user + cpu.system) / 1000 / (performance.now() - t0)) * 100;
  hypervisor.close();
  m.close();
  let qPerVm = NaN;
  if (qemu) {
    // One QEMU per VM: its CPU over 6 s minus over 1 s (start-up cancels out, but varies by tens of
    // ms between processes), per second; median of 3 pairs, never below 0.
    const q = (s: number): number => runMeasured(['timeout', String(s), 'qemu-system-x86_64', '-kernel', timer, '-append', 'halt=1', ...QEMU_ARGS], (s + 30) * 1000).cpuMs;
    qPerVm = Math.max(0, median([0, 1, 2].map(() => ((q(6) - q(1)) / 5000) * 100)));
  }
  return [
    {
      metric: `${vms} VMs halted with no timer, host CPU`,
      firmament: `${share.toFixed(2)}% of a core`,
      qemu: Number.isFinite(qPerVm) ? `${(qPerVm * vms).toFixed(2)}% (${vms} x ${qPerVm.toFixed(2)}%)` : 'n/a',
      ratio: ratio(share, qPerVm * vms),
      note: `goal < 0.5% in total; ours: ${vms} VMs in one machine, ${seconds} s after boot; QEMU: one process per VM (6 s run minus 1 s run, median of 3, 10 ms steps: ~0 is below its resolution)`,
    },
  ];
}
