/**
 * The source side of a live migration: pre-copy on the exact dirty log, then
 * stop-and-copy, then hand-over (docs/migration.md).
 *
 *   CONNECT → HELLO/ACCEPT → round 1 (every populated page) → rounds 2..n (pages
 *   dirtied since the last harvest) → [auto-converge throttle] → HOLD (VM paused
 *   exactly, between scheduling rounds) → last dirty pages, STATE, END →
 *   READY → GO → RUNNING → the VM is removed here.
 *
 * Any failure before GO releases the hold: the VM goes on exactly where it was,
 * as if nothing happened (its clock stood still while held). After GO the VM
 * may be running at the destination, so the source never resumes it on its
 * own: it stays held (paused) and the error says so.
 *
 * The migration runs in the gaps the machine's run loop leaves (it yields every
 * few milliseconds), so reading guest memory never races a running vCPU.
 */
import { createConnection } from 'node:net';
import type { Hypervisor } from '../../hypervisor/hypervisor.js';
import type { Vm } from '../../hypervisor/vm.js';
import { encodeSnapshot } from '../../machine/snapshot/codec.js';
import { epochMs, MigrationChannel } from './channel.js';
import { isZeroPage, MemoryDigest } from './memory-digest.js';
import { decodeJson, encodeJson, encodePages, FrameType, PAGE_SIZE, PAGES_PER_FRAME, type PageRecord } from './stream.js';

export interface MigrateOptions {
  /** Stop-and-copy once the rest is expected to take at most this long (QEMU's downtime-limit; default 5). */
  downtimeLimitMs?: number;
  /** Bytes per second on the link; unlimited by default. */
  bandwidth?: number | null;
  /** Pre-copy rounds before stop-and-copy is forced (the report then says the limit was missed). */
  maxRounds?: number;
  /** Throttle the VM when it dirties faster than the link drains (default on, as QEMU's auto-converge). */
  autoConverge?: boolean;
  /** Called after each round and at the switch-over (progress bar, monitor events). */
  onProgress?: (p: MigrationProgress) => void;
  connectTimeoutMs?: number;
  /** How long the source waits for the destination's READY and RUNNING. */
  ackTimeoutMs?: number;
}

export interface MigrationProgress {
  vm: string;
  phase: 'pre-copy' | 'stop-and-copy' | 'switch-over' | 'done' | 'failed';
  round: number;
  bytesSent: number;
  remainingBytes: number;
  /** Bytes the guest dirtied per second in the last round. */
  dirtyRate: number;
  throttlePercent: number;
  expectedDowntimeMs: number;
}

export interface RoundReport {
  round: number;
  pagesSent: number;
  zeroPages: number;
  unchangedPages: number;
  dirtyPages: number;
  ms: number;
  throttlePercent: number;
}

export interface MigrationReport {
  vm: string;
  to: string;
  rounds: RoundReport[];
  pagesSent: number;
  zeroPages: number;
  unchangedPages: number;
  ramPages: number;
  bytesOnWire: number;
  stateBytes: number;
  throttleSteps: number[];
  downtimeLimitMs: number;
  downtimeLimitMet: boolean;
  /** Source: from holding the VM to the destination's RUNNING. */
  downtimeMsSource: number;
  /** Where the source's downtime went: final harvest, last pages, state save, state send, waiting for READY, GO to RUNNING. */
  switchOver: Record<string, number>;
  /** Destination: from END received to the VM scheduled (its READY report). */
  downtimeMsDestination: number;
  totalMs: number;
  digest: string;
  destination: Record<string, unknown>;
}

export class MigrationError extends Error {
  constructor(
    message: string,
    /** What the source did with its VM: it runs on, or it is held paused because the destination may have it. */
    readonly sourceVm: 'running' | 'held',
  ) {
    super(message);
    this.name = 'MigrationError';
  }
}

/** Holds a VM exactly between scheduling rounds: its vCPUs are skipped and its clock stands still. */
export function holdVm(hv: Hypervisor, vm: Vm): () => void {
  const wasFrozen = vm.frozen;
  vm.frozen = true;
  vm.clock.pause();
  // Alone on the machine, a held VM would leave the run loop with nothing to wait for: pause the machine too (no busy wait).
  const alone = hv.vms.every((v) => v === vm || v.state !== 'running' || v.frozen);
  const pausedMachine = alone && !hv.machine.paused;
  if (pausedMachine) hv.machine.pauseAfterRound();
  let released = false;
  return () => {
    if (released) return;
    released = true;
    if (vm.state === 'running') vm.clock.resume();
    vm.frozen = wasFrozen;
    if (pausedMachine) hv.machine.resume();
    hv.machine.kick();
  };
}

const yieldToMachine = (): Promise<void> => new Promise((r) => setImmediate(r));

/** Throttles a VM to (100 - percent)% of wall time by holding it for part of every period (QEMU's cpu-throttle). */
class Throttle {
  percent = 0;
  private timer: NodeJS.Timeout | null = null;
  private release: (() => void) | null = null;
  private static readonly PERIOD_MS = 40;

  constructor(
    private readonly hv: Hypervisor,
    private readonly vm: Vm,
  ) {}

  set(percent: number): void {
    this.percent = percent;
    if (percent > 0 && !this.timer) this.tick();
  }

  /** The run loop yields about every 15 ms: a VM released for less than that runs that long anyway, so the period stretches instead. */
  private static readonly MIN_RUN_MS = 15;

  private tick(): void {
    if (this.percent <= 0) {
      this.timer = null;
      return;
    }
    const runMs = Math.max(Throttle.MIN_RUN_MS, (Throttle.PERIOD_MS * (100 - this.percent)) / 100);
    const holdMs = (runMs * this.percent) / (100 - this.percent);
    this.release = holdVm(this.hv, this.vm);
    this.timer = setTimeout(() => {
      this.release?.();
      this.release = null;
      this.timer = setTimeout(() => this.tick(), runMs);
    }, holdMs);
  }

  stop(): void {
    this.percent = 0;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.release?.();
    this.release = null;
  }
}

/**
 * Migrates `vm` to a destination listening at host:port. Resolves with the
 * report once the destination runs the VM (which is then removed here);
 * rejects with a MigrationError otherwise, saying what became of the VM.
 */
export async function migrateVm(hv: Hypervisor, vm: Vm, target: { host: string; port: number }, opts: MigrateOptions = {}): Promise<MigrationReport> {
  const to = `tcp:${target.host}:${target.port}`;
  if (!hv.vms.includes(vm)) throw new MigrationError(`VM '${vm.name}' is not on this machine`, 'running');
  if (vm.state !== 'running') throw new MigrationError(`VM '${vm.name}' has stopped (${vm.exit?.reason ?? 'no exit'}): nothing to migrate`, 'running');
  if (migrating.has(vm)) throw new MigrationError(`VM '${vm.name}' is already migrating`, 'running');
  const downtimeLimitMs = opts.downtimeLimitMs ?? 5;
  const maxRounds = opts.maxRounds ?? 30;
  const t0 = performance.now();
  migrating.set(vm, null);
  const socket = createConnection({ host: target.host, port: target.port });
  const ch = new MigrationChannel(socket, 'destination→source');
  ch.bandwidth = opts.bandwidth ?? null;
  const mem = vm.vmMemory;
  const ramPages = mem.ramBytes / PAGE_SIZE;
  const digest = new MemoryDigest();
  const throttle = new Throttle(hv, vm);
  const rounds: RoundReport[] = [];
  const throttleSteps: number[] = [];
  let release: (() => void) | null = null;
  let committed = false;
  // A dirty-log reader of its own: the behaviour observer (run --monitor) reads the same log, and a
  // harvest by either hands its pages to the other (GuestMemory's readers).
  const dirtyReader = { migration: vm.name };
  const stopReading = (): void => mem.stopDirtyLog(dirtyReader);
  let totals = { pagesSent: 0, zeroPages: 0, unchangedPages: 0 };
  const progress = (p: Omit<MigrationProgress, 'vm' | 'bytesSent' | 'throttlePercent'>): void => {
    const full = { vm: vm.name, bytesSent: ch.bytesOut, throttlePercent: throttle.percent, ...p };
    if (migrating.has(vm)) migrating.set(vm, full);
    opts.onProgress?.(full);
  };

  /** Sends the pages' current content: unchanged pages (same as last sent) are skipped, zero pages go as a flag. Returns the busy time spent. */
  const sendPages = async (pages: readonly number[], round: number, stats: RoundReport): Promise<number> => {
    let busy = 0;
    for (let i = 0; i < pages.length; ) {
      const start = performance.now();
      // A burst per gap of the run loop: up to ~4 ms of work, then let the guest run.
      while (i < pages.length && performance.now() - start < 4) {
        const batch: PageRecord[] = [];
        for (; i < pages.length && batch.length < PAGES_PER_FRAME; i++) {
          const pfn = pages[i]! / PAGE_SIZE;
          const bytes = mem.readPage(pages[i]!);
          const zero = isZeroPage(bytes);
          // Same content as last sent (or zero and never sent): nothing goes on the wire.
          if (!digest.set(pfn, zero ? null : bytes)) {
            if (zero) stats.zeroPages++;
            else stats.unchangedPages++;
            continue;
          }
          if (zero) stats.zeroPages++;
          else stats.pagesSent++;
          // readPage returns a copy of its own: no second copy for the frame.
          batch.push({ pfn, bytes: zero ? null : bytes });
        }
        if (batch.length > 0) await ch.send(FrameType.PAGES, encodePages(round, batch));
      }
      busy += performance.now() - start;
      if (release === null) await yieldToMachine();
    }
    return busy;
  };

  try {
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no connection to ${to} within ${opts.connectTimeoutMs ?? 10_000} ms`)), opts.connectTimeoutMs ?? 10_000);
      socket.once('connect', () => {
        clearTimeout(t);
        resolve();
      });
      socket.once('error', (e) => {
        clearTimeout(t);
        reject(new Error(`cannot connect to ${to}: ${e.message}`));
      });
    });
    await ch.send(FrameType.HELLO, encodeJson({ name: vm.name, vcpus: vm.vcpuCount, memBytes: mem.ramBytes, pcpus: hv.machine.hostCpus.length }));
    const accept = await ch.next(opts.ackTimeoutMs ?? 30_000);
    if (accept.type === FrameType.REFUSE) throw new Error(`destination refused: ${decodeJson<{ error: string }>(accept, { error: 'string' }).error}`);
    if (accept.type !== FrameType.ACCEPT) throw new Error(`destination answered frame type ${accept.type} instead of ACCEPT`);
    // A destination that does not say it takes REHEARSE frames (an older build) gets none.
    const rehearse = decodeJson<{ rehearse?: boolean }>(accept, {}).rehearse === true;

    // Round 1: every populated page (unpopulated ones are zero on both sides). Logging starts first, so
    // whatever the guest writes while round 1 is on the wire is dirty for round 2.
    mem.startDirtyLog(dirtyReader);
    const harvest = (): number[] => mem.harvestDirty(dirtyReader);
    // Round 1 sends every page: what was dirty before it needs no record.
    harvest();
    let pages = [...mem.ept.mappings(0, mem.ramBytes)].flatMap((m) => Array.from({ length: m.size / PAGE_SIZE }, (_, k) => m.gpa + k * PAGE_SIZE));
    let round = 1;
    let highDirtyRounds = 0;
    let rate = Infinity;
    let limitMet = true;
    for (;;) {
      const stats: RoundReport = { round, pagesSent: 0, zeroPages: 0, unchangedPages: 0, dirtyPages: pages.length, ms: 0, throttlePercent: throttle.percent };
      const r0 = performance.now();
      const bytes0 = ch.bytesOut;
      const busy = await sendPages(pages, round, stats);
      await ch.drain();
      stats.ms = Math.round((performance.now() - r0) * 10) / 10;
      await ch.send(FrameType.ROUND, encodeJson({ round, pages: stats.pagesSent, zero: stats.zeroPages }));
      rounds.push(stats);
      const sent = ch.bytesOut - bytes0;
      // Our own send rate (reading, hashing, framing, writing) bounds what the stop-and-copy can do; the link limit bounds it too.
      if (busy > 0 && sent > 64 * 1024) rate = (sent / busy) * 1000;
      if (ch.bandwidth !== null) rate = Math.min(rate, ch.bandwidth);
      pages = harvest();
      // A rehearsal while the VM runs on: the first save, encode, decode and load in a process run cold (several ms
      // against under 1 ms warm), so both ends run them once now and the calls inside the downtime find them warm.
      if (round === 1) {
        const rehearsal = encodeSnapshot({ vm: vm.saveState(), hotPages: pages.slice(0, 65536) });
        if (rehearse) await ch.send(FrameType.REHEARSE, rehearsal);
      }
      const dirtyBytes = pages.length * PAGE_SIZE;
      const dirtyRate = stats.ms > 0 ? (dirtyBytes / stats.ms) * 1000 : 0;
      const expectedDowntimeMs = rate === Infinity ? 0 : (dirtyBytes / rate) * 1000;
      progress({ phase: 'pre-copy', round, remainingBytes: dirtyBytes, dirtyRate, expectedDowntimeMs });
      if (expectedDowntimeMs <= downtimeLimitMs) break;
      if (round >= maxRounds) {
        limitMet = false;
        break;
      }
      // Auto-converge, as QEMU: the guest dirtied more than half of what the round sent, twice → throttle 20%, then +10% steps.
      // A few pages (an idle guest's stack and counters) never count as a high dirty rate.
      if (opts.autoConverge !== false && dirtyBytes > sent / 2 && dirtyBytes > 64 * PAGE_SIZE) {
        if (++highDirtyRounds >= 2) {
          highDirtyRounds = 0;
          const next = throttle.percent === 0 ? 20 : Math.min(99, throttle.percent + 10);
          throttle.set(next);
          throttleSteps.push(next);
        }
      }
      round++;
      if (vm.state !== 'running') throw new Error(`VM '${vm.name}' stopped during the migration (${vm.exit?.reason ?? '?'})`);
    }

    // Stop-and-copy: hold the VM exactly where it is, send what is still dirty, then its state.
    throttle.stop();
    if (vm.state !== 'running') throw new Error(`VM '${vm.name}' stopped during the migration (${vm.exit?.reason ?? '?'})`);
    const held = performance.now();
    release = holdVm(hv, vm);
    const last: RoundReport = { round: round + 1, pagesSent: 0, zeroPages: 0, unchangedPages: 0, dirtyPages: 0, ms: 0, throttlePercent: 0 };
    // What the last round's harvest found (not sent yet) plus what was written since.
    const finalPages = [...new Set([...pages, ...harvest()])].sort((a, b) => a - b);
    last.dirtyPages = finalPages.length;
    progress({ phase: 'stop-and-copy', round: last.round, remainingBytes: finalPages.length * PAGE_SIZE, dirtyRate: 0, expectedDowntimeMs: rate === Infinity ? 0 : ((finalPages.length * PAGE_SIZE) / rate) * 1000 });
    const switchPhases: Record<string, number> = {};
    let lapAt = held;
    const lap = (name: string): void => {
      const now = performance.now();
      switchPhases[name] = Math.round((now - lapAt) * 100) / 100;
      lapAt = now;
    };
    lap('harvestMs');
    await sendPages(finalPages, last.round, last);
    lap('pagesMs');
    const state = vm.saveState();
    const stateBytes = encodeSnapshot({ vm: state, hotPages: finalPages.slice(0, 65536) });
    lap('saveStateMs');
    await ch.send(FrameType.STATE, stateBytes);
    await ch.send(FrameType.END, encodeJson({ digest: digest.hex(), nonZeroPages: digest.nonZeroPages, rounds: last.round }));
    lap('sendStateMs');
    const endSent = epochMs();
    last.ms = Math.round((performance.now() - held) * 10) / 10;
    rounds.push(last);
    for (const r of rounds) {
      totals.pagesSent += r.pagesSent;
      totals.zeroPages += r.zeroPages;
      totals.unchangedPages += r.unchangedPages;
    }
    const ready = await ch.expect(FrameType.READY, opts.ackTimeoutMs ?? 60_000);
    const readyRx = epochMs();
    lap('readyWaitMs');
    const dst = decodeJson<Record<string, unknown>>(ready, {});
    // Point of no return: after GO the destination may run the VM, so it never runs here again.
    committed = true;
    const goSent = epochMs();
    await ch.send(FrameType.GO);
    const running = await ch.expect(FrameType.RUNNING, opts.ackTimeoutMs ?? 30_000);
    const runningRx = epochMs();
    const downtimeMsSource = performance.now() - held;
    lap('goToRunningMs');
    const dstRunning = decodeJson<Record<string, unknown>>(running, {});
    Object.assign(switchPhases, switchOverLegs({ endSent, readyRx, goSent, runningRx }, dstRunning['at']));
    stopReading();
    migrating.delete(vm);
    release = null;
    hv.removeVm(vm);
    ch.close();
    const report: MigrationReport = {
      vm: vm.name,
      to,
      rounds,
      ...totals,
      ramPages,
      bytesOnWire: ch.bytesOut,
      stateBytes: stateBytes.length,
      throttleSteps,
      downtimeLimitMs,
      downtimeLimitMet: limitMet,
      downtimeMsSource: Math.round(downtimeMsSource * 100) / 100,
      switchOver: switchPhases,
      downtimeMsDestination: typeof dstRunning['downtimeMs'] === 'number' ? dstRunning['downtimeMs'] : typeof dst['downtimeMs'] === 'number' ? dst['downtimeMs'] : -1,
      totalMs: Math.round((performance.now() - t0) * 10) / 10,
      digest: digest.hex(),
      destination: { ...dst, ...dstRunning },
    };
    progress({ phase: 'done', round: last.round, remainingBytes: 0, dirtyRate: 0, expectedDowntimeMs: 0 });
    return report;
  } catch (e) {
    throttle.stop();
    const msg = (e as Error).message;
    if (committed) {
      // The destination got GO and may be running the VM: never run it on both sides.
      ch.close();
      stopReading();
      migrating.delete(vm);
      progress({ phase: 'failed', round: rounds.length, remainingBytes: 0, dirtyRate: 0, expectedDowntimeMs: 0 });
      throw new MigrationError(`migration to ${to} failed after the switch-over was committed (${msg}); the destination may be running VM '${vm.name}', so it stays paused here`, 'held');
    }
    try {
      await ch.send(FrameType.ABORT, encodeJson({ error: msg }));
    } catch {
      // the link is gone already
    }
    ch.close();
    stopReading();
    release?.();
    migrating.delete(vm);
    progress({ phase: 'failed', round: rounds.length, remainingBytes: 0, dirtyRate: 0, expectedDowntimeMs: 0 });
    throw new MigrationError(`migration of VM '${vm.name}' to ${to} failed: ${msg}; the VM keeps running here`, 'running');
  }
}

/**
 * The two round trips of the switch-over split into legs, from both ends' wall clocks (one host: the
 * same clock; across hosts the transit legs carry the clocks' offset, and the destination's own legs stay exact).
 */
function switchOverLegs(src: { endSent: number; readyRx: number; goSent: number; runningRx: number }, dstAt: unknown): Record<string, number> {
  if (dstAt === null || typeof dstAt !== 'object') return {};
  const d = dstAt as Record<string, unknown>;
  const num = (k: string): number | null => (typeof d[k] === 'number' ? d[k] : null);
  const [endRx, readySent, goRx, runningSent] = [num('endRx'), num('readySent'), num('goRx'), num('runningSent')];
  if (endRx === null || readySent === null || goRx === null || runningSent === null) return {};
  const r = (x: number): number => Math.round(x * 100) / 100;
  return {
    endTransitMs: r(endRx - src.endSent),
    dstBuildMs: r(readySent - endRx),
    readyTransitMs: r(src.readyRx - readySent),
    goTransitMs: r(goRx - src.goSent),
    dstStartMs: r(runningSent - goRx),
    runningTransitMs: r(src.runningRx - runningSent),
  };
}

/** VMs with a migration under way and their last progress (the TUI's VMs pane reads this). */
export const migrating = new Map<Vm, MigrationProgress | null>();

/** One line for a VM being migrated, or null. */
export function migrationStatus(vm: Vm): string | null {
  if (!migrating.has(vm)) return null;
  const p = migrating.get(vm);
  if (!p) return 'migrating: connecting';
  return `migrating: ${p.phase} round ${p.round}, ${(p.bytesSent / 2 ** 20).toFixed(1)} MiB sent, ${(p.remainingBytes / 2 ** 20).toFixed(1)} MiB left, throttle ${p.throttlePercent}%`;
}
