/**
 * The CPU-path rows of issue 13 on their own, for A/B runs on a loaded machine: the compute and
 * sieve guests in this process (instructions/s by process CPU time, which load distorts far less
 * than wall time), each run followed by QEMU TCG on the same image with `--qemu`.
 *   npx tsx bench/cpu-ab.ts [runs] [--qemu] [--only=compute|sieve|idle|startup]
 * `idle`: the timer guest in HLT for 2 s at 1 kHz (process CPU, warm JIT); `startup`: whole-process
 * `firmament run hello.elf` (bench/perf-rows.ts startupRows).
 * Instruction counts come from one counted run (Unicorn's code hook, slow) and are kept in the
 * OS temp directory, keyed by image size and mtime, so alternating A/B processes skip it.
 */
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createGuestMachine } from '../vmm/run-guests.js';
import { PROJECT_ROOT } from '../machine/cpu/unicorn/locate.js';
import { QEMU_ARGS, runQemu } from './qemu.js';
import { median } from './row.js';
import { startupRows } from './perf-rows.js';

const MiB = 1024 * 1024;
const GUESTS = [
  ['compute', 'rounds=2048'],
  ['sieve', 'mib=32 passes=2'],
] as const;
const guest = (name: string): string => join(PROJECT_ROOT, 'images/build/guests', `${name}.elf`);
const COUNTS = join(tmpdir(), 'firmament-cpu-ab-counts.json');

async function run(path: string, cmdline: string, count: boolean): Promise<{ cpuMs: number; wallMs: number; instructions: number; serial: string; fills: number }> {
  const { machine: m, hypervisor, vms } = createGuestMachine([{ path, memBytes: 64 * MiB, vcpus: 1, cmdline }], { pcpus: 1, pace: 'realtime' });
  const counter = Buffer.alloc(8);
  if (count) vms[0]!.vcpus[0]!.cpu.engine.countInstructions(counter);
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  await m.run({ timeoutMs: 600_000 });
  const wallMs = performance.now() - t0;
  const cpu = process.cpuUsage(c0);
  const serial = vms[0]!.serial;
  const f = m.hostCpus[0]!.nativeTlb.counts();
  hypervisor.close();
  m.close();
  return { cpuMs: (cpu.user + cpu.system) / 1000, wallMs, instructions: Number(counter.readBigUInt64LE(0)), serial, fills: f.native + f.js };
}

async function instructions(name: string, cmdline: string): Promise<number> {
  const st = statSync(guest(name));
  const key = `${name} ${cmdline} ${st.size} ${st.mtimeMs}`;
  const cache = (existsSync(COUNTS) ? JSON.parse(readFileSync(COUNTS, 'utf8')) : {}) as Record<string, number>;
  if (cache[key] === undefined) {
    cache[key] = (await run(guest(name), cmdline, true)).instructions;
    writeFileSync(COUNTS, JSON.stringify(cache));
  }
  return cache[key];
}

const runs = Number(process.argv[2] ?? 3);
const qemu = process.argv.includes('--qemu');
const only = process.argv.find((a) => a.startsWith('--only='))?.slice(7);
for (const [name, cmdline] of GUESTS) {
  if (only && only !== name) continue;
  const n = await instructions(name, cmdline);
  const ours: number[] = [];
  const theirs: number[] = [];
  for (let i = 0; i < runs; i++) {
    const r = await run(guest(name), cmdline, false);
    ours.push(n / r.cpuMs / 1e3);
    let q = '';
    if (qemu) {
      const base = runQemu(['-kernel', guest('hello'), ...QEMU_ARGS]);
      const qr = runQemu(['-kernel', guest(name), '-append', cmdline, ...QEMU_ARGS], 600_000);
      theirs.push(n / Math.max(10, qr.cpuMs - base.cpuMs) / 1e3);
      q = `, QEMU ${theirs.at(-1)!.toFixed(0)} M/s (CPU ${(qr.cpuMs - base.cpuMs).toFixed(0)} ms)`;
    }
    console.log(`${name} ${cmdline}: ${(n / 1e6).toFixed(0)} M instructions, ours ${ours.at(-1)!.toFixed(0)} M/s (CPU ${r.cpuMs.toFixed(0)} ms, wall ${r.wallMs.toFixed(0)} ms, ${r.fills} TLB fills)${q}`);
  }
  console.log(`${name}: median ours ${median(ours).toFixed(0)} M/s${qemu ? `, QEMU ${median(theirs).toFixed(0)} M/s, ratio ${(median(ours) / median(theirs)).toFixed(2)}` : ''}`);
}

if (!only || only === 'idle') {
  const cpu: number[] = [];
  const q: number[] = [];
  await run(guest('timer'), 'idle=2000', false); // JIT warm-up
  for (let i = 0; i < runs; i++) {
    const r = await run(guest('timer'), 'idle=2000', false);
    cpu.push(r.cpuMs);
    if (qemu) q.push(runQemu(['-kernel', guest('timer'), '-append', 'idle=2000', ...QEMU_ARGS]).cpuMs);
    console.log(`timer idle=2000 (1 kHz, HLT): ours CPU ${r.cpuMs.toFixed(0)} ms of ${r.wallMs.toFixed(0)} ms${qemu ? `, QEMU whole process CPU ${q.at(-1)!.toFixed(0)} ms` : ''}`);
  }
  console.log(`idle: median ours ${median(cpu).toFixed(0)} ms${qemu ? `, QEMU ${median(q).toFixed(0)} ms, ratio ${(median(cpu) / median(q)).toFixed(2)}` : ''}`);
}
if (!only || only === 'startup') {
  for (const row of await startupRows(guest('hello'), qemu, runs)) console.log(`${row.metric}: ours ${row.firmament}, QEMU ${row.qemu}, ratio ${row.ratio} (${row.note})`);
}
