/**
 * `npm run bench`: speed and idle-cost targets, side by side with QEMU (TCG)
 * on the same images when QEMU is installed. Ratios are from one run on a
 * noisy machine: compare within a run, not across runs.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildImages } from '../tools/build-images.mjs';
import { createGuestMachine } from '../vmm/run-guests.js';
import { boot, DEFAULT_ROM, TEST_PAYLOAD } from '../vmm/boot.js';
import { DEFAULT_TIMER_SLACK_MS } from '../machine/platform/pc.js';
import { PROJECT_ROOT } from '../machine/cpu/unicorn/locate.js';
import { hasQemu, QEMU_ARGS, runMeasured, runQemu } from './qemu.js';
import { vmStateRows } from './vm-state.js';
import { cloneBenchRows } from './clones.js';
import { functionBenchRows } from './functions.js';
import { idlePolicyRows } from './idle-policy.js';
import { migrationBenchRows } from './migration.js';
import { anomalyBenchRows } from './anomaly.js';
import { haltedVmsRows, sieveRows, startupRows } from './perf-rows.js';
import { liveUpdateRows } from './live-update.js';
import { linuxBootRows } from './linux-boot.js';
import type { BenchRow } from './row.js';

const MiB = 1024 * 1024;

const fmt = (n: number, unit: string, digits = 1): string => (Number.isFinite(n) ? `${n.toFixed(digits)} ${unit}` : 'n/a');

async function timedRun(kernel: string, cmdline?: string, countInstructions = false, timerSlackMs?: number): Promise<{ wallMs: number; cpuMs: number; instructions: number; serial: string; code: number }> {
  const { machine: m, hypervisor, vms } = createGuestMachine([{ path: kernel, memBytes: 64 * MiB, vcpus: 1, ...(cmdline ? { cmdline } : {}) }], { pcpus: 1, pace: 'realtime', timerSlackMs });
  const counter = Buffer.alloc(8);
  if (countInstructions) vms[0]!.vcpus[0]!.cpu.engine.countInstructions(counter);
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const exit = await m.run({ timeoutMs: 300_000 });
  const wallMs = performance.now() - t0;
  const cpu = process.cpuUsage(c0);
  const serial = vms[0]!.serial;
  hypervisor.close();
  m.close();
  return { wallMs, cpuMs: (cpu.user + cpu.system) / 1000, instructions: Number(counter.readBigUInt64LE(0)), serial, code: exit.code };
}

export async function runBench(argv: string[]): Promise<number> {
  const images = await buildImages({ quiet: true });
  const qemu = hasQemu() && !argv.includes('--no-qemu');
  const rows: BenchRow[] = [];
  const compute = images.guests['compute']!;
  const timer = images.guests['timer']!;
  const hello = images.guests['hello']!;

  // 1. Instructions per second on the compute guest: 1 G instructions, so QEMU's CPU time (10 ms steps) resolves it.
  const computeArgs = 'rounds=2048';
  const counted = await timedRun(compute, computeArgs, true);
  const ours = await timedRun(compute, computeArgs);
  const ips = counted.instructions / (ours.wallMs / 1000);
  let qIps = NaN;
  let qCpuIps = NaN;
  if (qemu) {
    const base = runQemu(['-kernel', hello, ...QEMU_ARGS]);
    const q = runQemu(['-kernel', compute, '-append', computeArgs, ...QEMU_ARGS]);
    qIps = counted.instructions / (Math.max(1, q.wallMs - base.wallMs) / 1000);
    qCpuIps = counted.instructions / (Math.max(10, q.cpuMs - base.cpuMs) / 1000);
  }
  const cpuIps = counted.instructions / (ours.cpuMs / 1000);
  rows.push({ metric: 'compute guest: instructions/s', firmament: fmt(ips / 1e6, 'M/s'), qemu: fmt(qIps / 1e6, 'M/s'), ratio: qemu ? (ips / qIps).toFixed(2) : 'n/a', note: `${computeArgs}: ${(counted.instructions / 1e6).toFixed(1)} M instructions (counted exactly); QEMU wall minus its hello-guest start-up; by CPU time ours ${fmt(cpuIps / 1e6, 'M/s')} vs QEMU ${fmt(qCpuIps / 1e6, 'M/s')}${qemu ? ` (${(cpuIps / qCpuIps).toFixed(2)}x)` : ''}` });

  // 1b. Start-up of a whole `firmament run`, the memory-bound sieve guest, halted VMs (bench/perf-rows.ts).
  rows.push(...(await startupRows(hello, qemu)));
  rows.push(...(await sieveRows(images.guests['sieve']!, hello, qemu)));
  rows.push(...(await haltedVmsRows(timer, qemu)));

  // 2. Reset to POST complete (handoff POST code) on the default machine.
  let handoffWall = NaN;
  const wall0 = performance.now();
  const report = await boot({ memBytes: 64 * MiB, cpus: 1, faults: [], pace: 'realtime', nextStagePath: TEST_PAYLOAD }, { onPostCode: (p) => p.code === 0x5f && (handoffWall = performance.now() - wall0) });
  const handoffVirtual = report.postCodes.find((p) => p.code === 0x5f)?.atMs ?? NaN;
  let qBoot = NaN;
  if (qemu) qBoot = runQemu(['-M', 'pc', '-bios', DEFAULT_ROM, '-fw_cfg', `name=opt/firmament/next-stage,file=${TEST_PAYLOAD}`, ...QEMU_ARGS]).wallMs;
  rows.push({ metric: 'reset to POST complete (0x5F)', firmament: fmt(handoffWall, 'ms'), qemu: fmt(qBoot, 'ms'), ratio: qemu ? (handoffWall / qBoot).toFixed(2) : 'n/a', note: `virtual ${handoffVirtual} ms; both run the firmware with the test payload; QEMU: whole process to payload exit` });

  // 3. Host CPU time while the guest (under the hypervisor) sits in HLT for 2 s, 1 kHz PIT ticks.
  // a) A fresh `firmament run` process: its JSON reports the process CPU (all threads) from guest start
  //    to exit, so start-up is excluded and V8's warm-up of the tick path included. QEMU cannot report
  //    that, so both are also measured as the idle=2000 run minus the idle=100 run, each a new process
  //    (start-up cancels out; cutime counts in 10 ms steps). Medians of three.
  const pct = (r: { cpuMs: number; wallMs: number }): string => (Number.isFinite(r.cpuMs) ? `${((r.cpuMs / r.wallMs) * 100).toFixed(1)}%` : 'n/a');
  const share = (r: { cpuMs: number; wallMs: number }): number => r.cpuMs / r.wallMs;
  const median3 = <T extends { cpuMs: number; wallMs: number }>(run: () => T): T & { all: string } => {
    const runs = [run(), run(), run()].sort((x, y) => share(x) - share(y));
    return { ...runs[1]!, all: runs.map(pct).join(' ') };
  };
  const cli = (idle: string, json = false): ReturnType<typeof runMeasured> => runMeasured(['node', join(PROJECT_ROOT, 'tools/firmament.mjs'), 'run', timer, '--cmdline', idle, ...(json ? ['--json'] : [])]);
  const marginal = (long: { cpuMs: number; wallMs: number }, short: { cpuMs: number; wallMs: number }): { cpuMs: number; wallMs: number } => ({ cpuMs: long.cpuMs - short.cpuMs, wallMs: long.wallMs - short.wallMs });
  const runPhase = (): { cpuMs: number; wallMs: number } => {
    const host = (JSON.parse(cli('idle=2000', true).stdout) as { host: { cpuMs: number; wallMs: number } }).host;
    return { cpuMs: host.cpuMs, wallMs: host.wallMs };
  };
  const fresh = median3(runPhase);
  const freshMarginal = median3(() => marginal(cli('idle=2000'), cli('idle=100')));
  let qFresh = { cpuMs: NaN, wallMs: NaN, all: 'n/a' };
  if (qemu) qFresh = median3(() => marginal(runQemu(['-kernel', timer, '-append', 'idle=2000', ...QEMU_ARGS]), runQemu(['-kernel', timer, '-append', 'idle=100', ...QEMU_ARGS])));
  rows.push({ metric: 'timer guest idle 2 s, fresh process', firmament: `${fmt(fresh.cpuMs, 'ms')} of ${fmt(fresh.wallMs, 'ms')}`, qemu: `${fmt(qFresh.cpuMs, 'ms', 0)} of ${fmt(qFresh.wallMs, 'ms', 0)}`, ratio: qemu ? (share(fresh) / share(qFresh)).toFixed(2) : 'n/a', note: `${pct(fresh)} of one core from guest start to exit (runs ${fresh.all}), V8 warm-up included; idle=2000 minus idle=100 runs: ours ${pct(freshMarginal)} (${freshMarginal.all}), QEMU ${pct(qFresh)} (${qFresh.all})` });
  // b) In a long-lived process (JIT warm): the steady-state cost, default timer slack and none.
  const warmIdle = async (slack?: number): Promise<{ cpuMs: number; wallMs: number }> => {
    const runs = [await timedRun(timer, 'idle=2000', false, slack), await timedRun(timer, 'idle=2000', false, slack), await timedRun(timer, 'idle=2000', false, slack)];
    return runs.sort((a, b) => a.cpuMs - b.cpuMs)[1]!; // the median of three
  };
  await timedRun(timer, 'idle=2000'); // warm-up
  const idle = await warmIdle();
  const noSlack = await warmIdle(0);
  let qIdle = { cpuMs: NaN, wallMs: NaN };
  if (qemu) qIdle = runQemu(['-kernel', timer, '-append', 'idle=2000', ...QEMU_ARGS]);
  rows.push({ metric: 'timer guest in HLT for 2 s, warm', firmament: `${fmt(idle.cpuMs, 'ms')} of ${fmt(idle.wallMs, 'ms')}`, qemu: `${fmt(qIdle.cpuMs, 'ms', 0)} of ${fmt(qIdle.wallMs, 'ms', 0)}`, ratio: qemu ? (idle.cpuMs / qIdle.cpuMs).toFixed(2) : 'n/a', note: `${pct(idle)} of one core, median of 3, ${DEFAULT_TIMER_SLACK_MS} ms timer slack (default); ${pct(noSlack)} with --timer-slack 0 (a wake-up per tick); QEMU whole process incl. start-up` });

  // 4. VM state: snapshot save/restore/size vs QEMU, incremental restore, VM creation from a snapshot.
  rows.push(...(await vmStateRows(images.guests, qemu)));
  // 5. Linked clones: creation time per clone, host frames of 100 clones of a 16 MiB base.
  rows.push(...(await cloneBenchRows(images.guests['clone']!)));
  // 6. Function service: warm pool vs boot per request, 16 clients, checkpoint park/resume (docs/functions.md).
  rows.push(...(await functionBenchRows(images.guests['function-runtime']!, images.functions)));
  // 7. Idle policies (native, emulated, adaptive) on the idling workload guests, in virtual time.
  rows.push(...(await idlePolicyRows(images.guests)));
  // 8. Live migration: downtime, total time, pages sent per RAM, prepopulated vs lazy after resume, QEMU as the peer.
  rows.push(...(await migrationBenchRows(images.guests, qemu)));
  // 9. Behaviour profiles: what the security service costs the compute guest.
  rows.push(...(await anomalyBenchRows(compute)));
  // 10. Live update: blackout per VM on both sides and the successor's preparation, for 1 and 4 VMs.
  rows.push(...(await liveUpdateRows(images.guests['uptick']!)));
  // 11. Debian's kernel to the busybox shell, against QEMU TCG on the same files (bench/linux-boot.ts).
  rows.push(...(await linuxBootRows(qemu)));

  print(rows, qemu);
  const dir = join(PROJECT_ROOT, 'bench/results');
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'latest.json'), JSON.stringify({ at: new Date().toISOString(), rows }, null, 2));
  return 0;
}

function print(rows: BenchRow[], qemu: boolean): void {
  const cols: (keyof BenchRow)[] = ['metric', 'firmament', 'qemu', 'ratio', 'note'];
  const width = cols.map((c) => Math.max(c.length, ...rows.map((r) => r[c].length)));
  const line = (r: Record<string, string>): string => cols.map((c, i) => r[c]!.padEnd(width[i]!)).join('  ');
  console.log(line({ metric: 'metric', firmament: 'firmament', qemu: qemu ? 'qemu (TCG)' : 'qemu (not installed)', ratio: 'ratio', note: 'note' }));
  console.log(width.map((w) => '-'.repeat(w)).join('  '));
  for (const r of rows) console.log(line(r as unknown as Record<string, string>));
}
