/**
 * Live migration in the bench: three processes as a user runs them
 * (`run --incoming`, `run --monitor`, `migrate`), for a 64 MiB guest dirtying
 * 4 MiB/s, one dirtying as fast as it can and an idle one, with both populate modes; QEMU 7.2's
 * own migration of the same dirtier guest as the peer (`-incoming tcp:`, HMP
 * `migrate -d`, `info migrate`).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PROJECT_ROOT } from '../machine/cpu/unicorn/locate.js';
import { QEMU_ARGS } from './qemu.js';
import type { BenchRow } from './row.js';

const CLI = join(PROJECT_ROOT, 'tools/firmament.mjs');

interface Proc {
  child: ChildProcess;
  out: () => string;
  err: () => string;
  done: Promise<number>;
}

function start(cmd: string, args: string[]): Proc {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout!.setEncoding('latin1').on('data', (d: string) => (out += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  return { child, out: () => out, err: () => err, done: new Promise((r) => child.on('close', (c) => r(c ?? -1))) };
}

async function until(cond: () => boolean, what: string, ms = 120_000): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

interface OurRun {
  report: { rounds: unknown[]; pagesSent: number; ramPages: number; downtimeMsSource: number; downtimeMsDestination: number; totalMs: number; bytesOnWire: number; throttleSteps: number[]; downtimeLimitMet: boolean; switchOver: Record<string, number> };
  afterResume: { firstSliceMs: number | null; eptViolations: number; lazyFaults: number; tlbFillWalks: number; units: string } | null;
  transcriptOk: boolean;
  /** Where a transcript differs, if it does. */
  transcriptNote: string;
}

export async function ourMigration(dir: string, elf: string, cmdline: string, populate: 'prepopulate' | 'lazy', startAfter: string): Promise<OurRun> {
  const procs: Proc[] = [];
  try {
    const ref = start('node', [CLI, 'run', elf, '--cmdline', cmdline]);
    procs.push(ref);
    const dst = start('node', [CLI, 'run', '--incoming', 'tcp:127.0.0.1:0', '--populate', populate, '--json']);
    procs.push(dst);
    await until(() => /waiting for a migration on tcp:127\.0\.0\.1:\d+/.test(dst.err()), 'the destination');
    const port = /tcp:127\.0\.0\.1:(\d+)/.exec(dst.err())![1]!;
    const sock = join(dir, `src-${populate}-${Date.now()}.sock`);
    const src = start('node', [CLI, 'run', elf, '--cmdline', cmdline, '--monitor', sock]);
    procs.push(src);
    await until(() => src.out().includes(startAfter) && existsSync(sock), 'the source guest and its monitor');
    const mig = start('node', [CLI, 'migrate', '--monitor', sock, '--to', `tcp:127.0.0.1:${port}`, '--json']);
    procs.push(mig);
    if ((await mig.done) !== 0) throw new Error(`migrate failed: ${mig.err()} (source: exit ${src.child.exitCode}, ${src.err().slice(-300)}; socket exists now: ${existsSync(sock)}; ${JSON.stringify(src.out().slice(0, 200))})`);
    await src.done;
    await dst.done;
    await ref.done;
    const d = JSON.parse(dst.out()) as { serial: string; afterResume: OurRun['afterResume'] };
    const srcOk = src.out() === ref.out().slice(0, src.out().length);
    const dstOk = d.serial === ref.out();
    const firstDiff = (a: string, b: string): number => [...a].findIndex((c, i) => c !== b[i]);
    const transcriptNote = srcOk && dstOk ? 'equal' : `${srcOk ? '' : `source differs at byte ${firstDiff(src.out(), ref.out())}; `}${dstOk ? '' : `destination (${d.serial.length} bytes) differs from the unmigrated run (${ref.out().length}) at byte ${firstDiff(d.serial, ref.out())}: ${JSON.stringify(d.serial.slice(Math.max(0, firstDiff(d.serial, ref.out()) - 40), firstDiff(d.serial, ref.out()) + 60))} vs ${JSON.stringify(ref.out().slice(Math.max(0, firstDiff(d.serial, ref.out()) - 40), firstDiff(d.serial, ref.out()) + 60))}`}`;
    return { report: JSON.parse(mig.out()) as OurRun['report'], afterResume: d.afterResume, transcriptOk: srcOk && dstOk, transcriptNote };
  } finally {
    for (const p of procs) if (p.child.exitCode === null) p.child.kill();
  }
}

/** HMP over a Unix socket: send a line, collect what comes back for `waitMs`. */
async function hmp(path: string, line: string, waitMs = 300): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = createConnection(path);
    let text = '';
    s.on('data', (d) => (text += d.toString('latin1')));
    s.on('error', reject);
    s.on('connect', () => {
      setTimeout(() => s.write(`${line}\n`), 100);
      setTimeout(() => {
        s.destroy();
        resolve(text);
      }, 100 + waitMs);
    });
  });
}

interface QemuRun {
  downtimeMs: number;
  totalMs: number;
  transferredKiB: number;
}

async function qemuMigration(dir: string, elf32: string, cmdline: string, startAfter: string): Promise<QemuRun> {
  const port = 47000 + Math.floor(Math.random() * 2000);
  const dstMon = join(dir, 'qdst.sock');
  const srcMon = join(dir, 'qsrc.sock');
  const base = ['qemu-system-x86_64', '-kernel', elf32, '-append', cmdline, ...QEMU_ARGS];
  const dst = start(base[0]!, [...base.slice(1), '-incoming', `tcp:127.0.0.1:${port}`, '-monitor', `unix:${dstMon},server,nowait`]);
  const src = start(base[0]!, [...base.slice(1), '-monitor', `unix:${srcMon},server,nowait`]);
  try {
    await until(() => src.out().includes(startAfter), 'the QEMU source guest');
    await hmp(srcMon, `migrate -d tcp:127.0.0.1:${port}`);
    let info = '';
    await until(() => /Migration status: completed/.test(info), 'QEMU to complete the migration', 120_000).catch(() => undefined);
    for (let i = 0; i < 200 && !/Migration status: (completed|failed)/.test(info); i++) info = await hmp(srcMon, 'info migrate', 200);
    const num = (re: RegExp): number => Number(re.exec(info)?.[1] ?? NaN);
    return { downtimeMs: num(/downtime: (\d+) ms/), totalMs: num(/total time: (\d+) ms/), transferredKiB: num(/transferred ram: (\d+) kbytes/) };
  } finally {
    for (const p of [src, dst]) if (p.child.exitCode === null) p.child.kill();
  }
}

const f1 = (n: number): string => (Number.isFinite(n) ? n.toFixed(1) : 'n/a');

export async function migrationBenchRows(guests: Record<string, string>, qemu: boolean): Promise<BenchRow[]> {
  const dir = mkdtempSync(join(tmpdir(), 'fm-bench-migrate-'));
  const rows: BenchRow[] = [];
  try {
    const dirtier = guests['dirtier']!;
    // The issue's dirtying guest: 64 MiB of RAM, 4 MiB/s of writes (an 8 MiB working set, one pass per 2 s).
    const dirtierCmd = 'mib=8 passes=6 rate=4096';
    const fastCmd = 'mib=8 passes=150';
    const runs = {
      dirtyPre: await ourMigration(dir, dirtier, dirtierCmd, 'prepopulate', 'pass 1/'),
      dirtyLazy: await ourMigration(dir, dirtier, dirtierCmd, 'lazy', 'pass 1/'),
      fastPre: await ourMigration(dir, dirtier, fastCmd, 'prepopulate', 'pass 3/'),
      idlePre: await ourMigration(dir, guests['timer']!, 'idle=20000', 'prepopulate', 'idle mode'),
      idleLazy: await ourMigration(dir, guests['timer']!, 'idle=20000', 'lazy', 'idle mode'),
    };
    let q: QemuRun | null = null;
    if (qemu) {
      try {
        q = await qemuMigration(dir, guests['dirtier']!, dirtierCmd, 'pass 1/');
      } catch {
        q = null;
      }
    }
    for (const [label, r, peer] of [
      ['64 MiB guest dirtying 4 MiB/s (dirtier rate=4096)', runs.dirtyPre, q],
      ['dirtier (8 MiB working set, as fast as it can)', runs.fastPre, null],
      ['idle guest (timer idle=20000)', runs.idlePre, null],
    ] as const) {
      const rep = r.report;
      rows.push({ metric: `migration downtime, ${label}`, firmament: `${f1(rep.downtimeMsSource)} ms`, qemu: peer ? `${f1(peer.downtimeMs)} ms` : 'n/a', ratio: peer ? (rep.downtimeMsSource / peer.downtimeMs).toFixed(2) : 'n/a', note: `source pause to destination RUNNING (destination: ${f1(rep.downtimeMsDestination)} ms); limit 5 ms ${rep.downtimeLimitMet ? 'met by the estimate' : 'missed (30 rounds)'}; phases ${JSON.stringify(rep.switchOver)}; transcript ${r.transcriptNote}` });
      rows.push({ metric: `migration total time, ${label}`, firmament: `${f1(rep.totalMs)} ms`, qemu: peer ? `${f1(peer.totalMs)} ms` : 'n/a', ratio: peer ? (rep.totalMs / peer.totalMs).toFixed(2) : 'n/a', note: `${rep.rounds.length} rounds, throttle steps ${rep.throttleSteps.join(',') || 'none'}` });
      rows.push({ metric: `migration pages sent / guest RAM, ${label}`, firmament: (rep.pagesSent / rep.ramPages).toFixed(2), qemu: peer ? ((peer.transferredKiB * 1024) / (64 * 1024 * 1024)).toFixed(2) : 'n/a', ratio: 'n/a', note: `${rep.pagesSent} data pages of ${rep.ramPages}; zero pages go as 5-byte records; ${f1(rep.bytesOnWire / 2 ** 20)} MiB on the wire; QEMU: transferred ram / 64 MiB` });
    }
    for (const [label, pre, lazy] of [
      ['dirtier 4 MiB/s', runs.dirtyPre, runs.dirtyLazy],
      ['idle', runs.idlePre, runs.idleLazy],
    ] as const) {
      const a = pre.afterResume;
      const b = lazy.afterResume;
      const show = (x: OurRun['afterResume']): string => (x ? `EPT viol ${x.eptViolations}, TLB-fill walks ${x.tlbFillWalks}, first slice ${x.firstSliceMs} ms, units ${x.units}` : 'n/a');
      rows.push({ metric: `after resume (first 10 ms guest time), ${label}: prepopulate vs lazy`, firmament: show(a), qemu: show(b), ratio: 'n/a', note: 'columns: prepopulate | lazy (not QEMU); units = guest code bytes entered (our virtual clock), the proxy for instructions retired' });
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return rows;
}
