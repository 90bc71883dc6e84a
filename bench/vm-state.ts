/**
 * `npm run bench` rows for VM state: snapshot save, restore and size of a
 * 64 MiB guest against QEMU (migration of the stopped VM to a file: QEMU 7.2's
 * savevm/loadvm need a qcow2 disk and qemu-img is not among our packages),
 * bytes moved by an incremental restore against a full one, and the host CPU
 * to create a 1-vCPU VM from a snapshot.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createGuestMachine, guestHost, type GuestMachine } from '../vmm/run-guests.js';
import { SnapshotStore } from '../vmm/snapshot/index.js';
import { coalesceRanges, restoreIncrementally, saveVmSnapshot } from '../vmm/incremental-restore.js';
import { QEMU_ARGS } from './qemu.js';
import type { BenchRow } from './row.js';

const MiB = 1024 * 1024;
const SAVE_GUEST = 'mib=16 passes=1000';
const RUNS = 5;

interface Spread {
  median: number;
  min: number;
  max: number;
  p10: number;
  p90: number;
}

function spread(xs: number[]): Spread {
  const s = [...xs].sort((a, b) => a - b);
  const at = (q: number): number => s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
  return { median: at(0.5), min: s[0]!, max: s.at(-1)!, p10: at(0.1), p90: at(0.9) };
}

const ms = (x: Spread, d = 1): string => (Number.isFinite(x.median) ? `${x.median.toFixed(d)} ms (${x.min.toFixed(d)}-${x.max.toFixed(d)})` : 'n/a');
const mb = (n: number): string => (Number.isFinite(n) ? `${(n / MiB).toFixed(1)} MiB` : 'n/a');
const ratio = (a: number, b: number): string => (Number.isFinite(a) && Number.isFinite(b) && b > 0 ? (a / b).toFixed(2) : 'n/a');
const sleep = (t: number): Promise<void> => new Promise((r) => setTimeout(r, t));

/** Runs a guest machine until its console matches, then pauses between rounds. */
async function runUntil(g: GuestMachine, text: string, running: { p: Promise<unknown> | null }): Promise<void> {
  const vm = g.vms[0]!;
  vm.onSerial = () => {
    if (vm.serial.includes(text)) g.machine.pauseAfterRound();
  };
  if (running.p) g.machine.resume();
  else running.p = g.machine.run({ timeoutMs: 300_000 });
  while (!g.machine.paused && !g.machine.exit) await sleep(2);
  if (g.machine.exit) throw new Error(`bench guest exited before printing '${text}': ${g.machine.exit.reason}`);
}

function endMachine(g: GuestMachine): void {
  g.machine.stop('bench done');
  g.hypervisor.close();
  g.machine.close();
}

// ------------------------------------------------------------ ours

export async function oursSaveRestore(dirtier: string): Promise<{ save: Spread; restore: Spread; bytes: number }> {
  const g = createGuestMachine([{ path: dirtier, memBytes: 64 * MiB, vcpus: 1, cmdline: SAVE_GUEST }], { pcpus: 1, pace: 'virtual' });
  const host = guestHost(64 * MiB, { pcpus: 1, pace: 'virtual' });
  const save: number[] = [];
  const restore: number[] = [];
  let bytes = NaN;
  try {
    await runUntil(g, 'pass 1/', { p: null });
    for (let i = 0; i < RUNS; i++) {
      const dir = mkdtempSync(join(tmpdir(), 'fm-bench-snap-'));
      try {
        const store = SnapshotStore.open(dir);
        let t0 = performance.now();
        const image = g.hypervisor.snapshotVm(g.vms[0]!);
        const report = await store.save('s', { state: image.state, memory: coalesceRanges(image.memory) });
        save.push(performance.now() - t0);
        bytes = report.newBytes;
        t0 = performance.now();
        const data = await store.load('s');
        const vm = host.hypervisor.restoreVm(data.state, { ranges: data.memory }, { start: false });
        restore.push(performance.now() - t0);
        vm.close();
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    }
  } finally {
    endMachine(g);
    host.hypervisor.close();
    host.machine.close();
  }
  return { save: spread(save), restore: spread(restore), bytes };
}

// ------------------------------------------------------------ QEMU peer

/** A QMP connection: one command at a time, events skipped. */
class Qmp {
  private buf = '';
  private waiters: ((line: Record<string, unknown>) => void)[] = [];
  private constructor(private readonly sock: Socket) {
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => {
      this.buf += d;
      let nl: number;
      while ((nl = this.buf.indexOf('\n')) >= 0) {
        const line = this.buf.slice(0, nl).trim();
        this.buf = this.buf.slice(nl + 1);
        if (!line) continue;
        const msg = JSON.parse(line) as Record<string, unknown>;
        if ('event' in msg) continue;
        this.waiters.shift()?.(msg);
      }
    });
  }

  static async open(path: string, proc: ChildProcess): Promise<Qmp> {
    for (let i = 0; i < 500; i++) {
      if (proc.exitCode !== null) throw new Error(`QEMU exited (${proc.exitCode}) before its QMP socket opened`);
      const sock = await new Promise<Socket | null>((resolve) => {
        const s = connect(path);
        s.once('connect', () => resolve(s));
        s.once('error', () => resolve(null));
      });
      if (sock) {
        const q = new Qmp(sock);
        await q.next(); // greeting
        await q.cmd('qmp_capabilities');
        return q;
      }
      await sleep(10);
    }
    throw new Error(`QMP socket ${path} did not open`);
  }

  private next(): Promise<Record<string, unknown>> {
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  async cmd(execute: string, args?: Record<string, unknown>): Promise<Record<string, unknown>> {
    const reply = this.next();
    this.sock.write(JSON.stringify(args ? { execute, arguments: args } : { execute }) + '\n');
    const r = await reply;
    if ('error' in r) throw new Error(`QMP ${execute}: ${JSON.stringify(r['error'])}`);
    return r['return'] as Record<string, unknown>;
  }

  /** Polls query-migrate until it completes; returns the status record. */
  async migrationDone(): Promise<Record<string, unknown>> {
    for (;;) {
      const st = await this.cmd('query-migrate');
      if (st['status'] === 'completed') return st;
      if (st['status'] === 'failed' || st['status'] === 'cancelled') throw new Error(`QEMU migration ${String(st['status'])}: ${JSON.stringify(st)}`);
      await sleep(1);
    }
  }

  close(): void {
    this.sock.destroy();
  }
}

function startQemu(dirtier: string, qmp: string, extra: string[]): { proc: ChildProcess; serial: () => string; done: Promise<void> } {
  const proc = spawn('qemu-system-x86_64', ['-kernel', dirtier, '-append', SAVE_GUEST, ...QEMU_ARGS, '-qmp', `unix:${qmp},server=on,wait=off`, ...extra], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
  proc.stderr!.resume();
  const done = new Promise<void>((r) => proc.once('exit', () => r()));
  return { proc, serial: () => out, done };
}

async function qemuSaveRestore(dirtier: string): Promise<{ save: Spread; restore: Spread; bytes: number }> {
  const save: number[] = [];
  const restore: number[] = [];
  let bytes = NaN;
  for (let i = 0; i < RUNS; i++) {
    const dir = mkdtempSync(join(tmpdir(), 'fm-bench-qemu-'));
    const file = join(dir, 'vmstate');
    try {
      // Save: the guest runs to the end of its first pass, is stopped, and its state streams into a file.
      const src = startQemu(dirtier, join(dir, 'src.qmp'), []);
      try {
        const q = await Qmp.open(join(dir, 'src.qmp'), src.proc);
        for (let t = 0; !src.serial().includes('pass 1/'); t++) {
          if (t > 60_000 || src.proc.exitCode !== null) throw new Error(`QEMU guest did not reach pass 1: ${src.serial()}`);
          await sleep(1);
        }
        await q.cmd('stop');
        const t0 = performance.now();
        await q.cmd('migrate', { uri: `exec:cat > ${file}` });
        await q.migrationDone();
        save.push(performance.now() - t0);
        bytes = statSync(file).size;
        await q.cmd('quit').catch(() => undefined);
        q.close();
      } finally {
        src.proc.kill();
        await src.done;
      }
      // Restore: a QEMU waiting for an incoming migration loads it from the file.
      const dst = startQemu(dirtier, join(dir, 'dst.qmp'), ['-incoming', 'defer']);
      try {
        const q = await Qmp.open(join(dir, 'dst.qmp'), dst.proc);
        const t0 = performance.now();
        await q.cmd('migrate-incoming', { uri: `exec:cat ${file}` });
        await q.migrationDone();
        restore.push(performance.now() - t0);
        await q.cmd('quit').catch(() => undefined);
        q.close();
      } finally {
        dst.proc.kill();
        await dst.done;
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
  return { save: spread(save), restore: spread(restore), bytes };
}

// ------------------------------------------------------------ incremental restore, VM creation

async function incremental(dirtier: string): Promise<{ moved: number; full: number; dirty: number | null; method: string; hashMoved: number; incMs: number; fullMs: number; create: Spread; eagerCreate: Spread; flushMs: Spread }> {
  const dir = mkdtempSync(join(tmpdir(), 'fm-bench-inc-'));
  const spec = [{ path: dirtier, memBytes: 64 * MiB, vcpus: 1, cmdline: 'mib=8 passes=4' }];
  const g = createGuestMachine(spec, { pcpus: 1, pace: 'virtual' });
  const h = createGuestMachine(spec, { pcpus: 1, pace: 'virtual' });
  const host = guestHost(64 * MiB, { pcpus: 1, pace: 'virtual', extraHostBytes: 64 * MiB });
  try {
    const store = SnapshotStore.open(dir);
    const run = { p: null as Promise<unknown> | null };
    await runUntil(g, 'pass 1/4 done', run);
    await saveVmSnapshot(g.hypervisor, g.vms[0]!, store, 'P');
    await runUntil(g, 'pass 3/4 done', run);
    let t0 = performance.now();
    const r = await restoreIncrementally(g.hypervisor, g.vms[0]!, store, 'P');
    const incMs = performance.now() - t0;
    // The same way back from a VM that never held P: every chunk hashed.
    await runUntil(h, 'pass 3/4 done', { p: null });
    const byHash = await restoreIncrementally(h.hypervisor, h.vms[0]!, store, 'P', { method: 'hash' });
    t0 = performance.now();
    const data = await store.load('P');
    host.hypervisor.restoreVm(data.state, { ranges: data.memory }, { start: false }).close();
    const fullMs = performance.now() - t0;

    // Host CPU to create a 1-vCPU VM from the snapshot: lazy population (no memory copy), then eager for reference.
    const cpuOf = (make: () => { close(): void }): number => {
      const c0 = process.cpuUsage();
      const vm = make();
      const c = process.cpuUsage(c0);
      vm.close();
      return (c.user + c.system) / 1000;
    };
    const lazy = () => host.hypervisor.restoreVm(data.state, { ranges: data.memory, populate: 'lazy' }, { start: false });
    for (let i = 0; i < 20; i++) cpuOf(lazy); // JIT warm-up
    const create = spread(Array.from({ length: 300 }, () => cpuOf(lazy)));
    const eagerCreate = spread(Array.from({ length: 10 }, () => cpuOf(() => host.hypervisor.restoreVm(data.state, { ranges: data.memory }, { start: false }))));
    // A restored vCPU's engine drops its translated code before it next runs: one flush per engine, however many restores.
    const engine = host.machine.hostCpus[0]!.engine;
    const flushMs = spread(
      Array.from({ length: 5 }, () => {
        const c0 = process.cpuUsage();
        engine.flushCode();
        const c = process.cpuUsage(c0);
        return (c.user + c.system) / 1000;
      }),
    );
    return { moved: r.bytesMoved, full: r.fullBytes, dirty: r.chunksDirty, method: r.method, hashMoved: byHash.bytesMoved, incMs, fullMs, create, eagerCreate, flushMs };
  } finally {
    endMachine(g);
    endMachine(h);
    host.hypervisor.close();
    host.machine.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function vmStateRows(guests: Record<string, string>, qemu: boolean): Promise<BenchRow[]> {
  const dirtier = guests['dirtier']!;
  const ours = await oursSaveRestore(dirtier);
  const peer = qemu ? await qemuSaveRestore(dirtier) : { save: spread([NaN]), restore: spread([NaN]), bytes: NaN };
  const how = `dirtier ${SAVE_GUEST}, 64 MiB, stopped after pass 1; median (min-max) of ${RUNS}`;
  const peerHow = 'QEMU: migrate "exec:cat > FILE" of the stopped VM / -incoming defer + migrate-incoming "exec:cat FILE" (savevm/loadvm need a qcow2 disk: no qemu-img here)';
  const inc = await incremental(dirtier);
  return [
    { metric: 'VM snapshot save, 64 MiB guest', firmament: ms(ours.save), qemu: ms(peer.save), ratio: ratio(ours.save.median, peer.save.median), note: `${how}; ours: snapshotVm + store.save into an empty store (64 KiB chunks, sha256, each blob fsynced); ${peerHow}` },
    { metric: 'VM snapshot restore, 64 MiB guest', firmament: ms(ours.restore), qemu: ms(peer.restore), ratio: ratio(ours.restore.median, peer.restore.median), note: `ours: store.load (every chunk re-hashed) + restoreVm with all 64 MiB written; QEMU: from migrate-incoming to "completed"` },
    { metric: 'VM snapshot size, 64 MiB guest', firmament: mb(ours.bytes), qemu: mb(peer.bytes), ratio: ratio(ours.bytes, peer.bytes), note: 'ours: bytes added to an empty store (zero chunks not stored); QEMU: the migration stream file (zero pages as flags)' },
    {
      metric: 'incremental restore: bytes moved',
      firmament: mb(inc.moved),
      qemu: 'n/a',
      ratio: `${ratio(inc.moved, inc.full)} of full`,
      note: `dirtier mib=8 passes=4, P after pass 1, back to P after pass 3: ${inc.method} (${inc.dirty} chunks dirty), ${inc.incMs.toFixed(0)} ms, vs a full restore of ${mb(inc.full)} in ${inc.fullMs.toFixed(0)} ms; by hashing all memory also ${mb(inc.hashMoved)}; QEMU's loadvm always loads everything`,
    },
    {
      metric: 'create a 1-vCPU VM from a snapshot, host CPU',
      firmament: `${inc.create.median.toFixed(3)} ms`,
      qemu: 'n/a',
      ratio: `${ratio(inc.create.median, 1)} of 1 ms goal`,
      note: `restoreVm, lazy population (no memory copy), median of 300, p10-p90 ${inc.create.p10.toFixed(3)}-${inc.create.p90.toFixed(3)} ms; with the 64 MiB copied (eager) ${inc.eagerCreate.median.toFixed(1)} ms; the engine's next slice pays one translated-code flush (${inc.flushMs.median.toFixed(1)} ms) for any number of restores`,
    },
  ];
}
