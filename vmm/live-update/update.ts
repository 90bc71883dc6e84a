/**
 * The old process's side of a live update (docs/live-update.md):
 * 1. spawn the new version (`<PATH>/tools/firmament.mjs takeover`) with the RAM
 *    memfd as its fd 3, a Unix socket pair as fd 4 and the launcher's status
 *    pipe as fd 5; it builds its engines and maps the RAM while guests run on;
 * 2. pause every VM between scheduling rounds and send the state record;
 * 3. the new process validates and adopts it ('adopted') or refuses;
 * 4. commit ('go'): from here the old process never runs these VMs again;
 *    the new one resumes them and confirms ('running'); the monitor socket
 *    is handed over and the old process exits.
 * A refusal, a successor that dies, or one that does not answer in time
 * (then it is killed with SIGKILL) before the commit: every VM resumes here,
 * as if nothing happened, and the report says why.
 */
import { spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Socket } from 'node:net';
import type { PcMachine } from '../../machine/platform/pc.js';
import type { Hypervisor } from '../../hypervisor/hypervisor.js';
import type { SharedRam } from '../../machine/memory/shared-ram.js';
import { encodeSnapshot } from '../../machine/snapshot/codec.js';
import type { LiveUpdateReport } from '../../machine/debug/protocol.js';
import { saveLiveState, type HostShape } from './state.js';
import { epochMs, procStatusKiB, TimeoutError, UpdateChannel, type SuccessorSettings, type UpdateMessage } from './wire.js';

const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
/** The successor loads its code, Unicorn and engines in this time, while guests keep running. */
export const DEFAULT_READY_TIMEOUT_MS = 120_000;
/** From the pause to the successor's 'adopted': guests are paused for at most this long before a rollback. */
export const DEFAULT_TAKEOVER_TIMEOUT_MS = 10_000;
/** The child's descriptors: the RAM file, the update channel, the status pipe to the launcher. */
export const FD_RAM = 3;
export const FD_CHANNEL = 4;
export const FD_STATUS = 5;

export interface UpdateOptions {
  /** Another checkout or installed copy of Firmament (its tools/firmament.mjs); default: this one. */
  to?: string;
  /** Pause-to-adopted limit (rollback after it). */
  timeoutMs?: number;
  readyTimeoutMs?: number;
  /** The successor's stdout and stderr: the user's (default), or none (the bench, which prints its own table). */
  output?: 'inherit' | 'ignore';
}

export type UpdateReport = LiveUpdateReport;

export class LiveUpdateHost {
  /** Set at the commit: the machine's run ends, and the process only waits for the successor chain. */
  handedOver = false;
  private busy = false;
  private statusIn: Socket | null = null;
  /** The monitor server, closed for the successor to bind the same path. */
  releaseMonitor: () => Promise<void> = async () => {};
  private releasedNow: () => void = () => {};
  /** Resolves once the monitor has answered `update`, its socket is closed and the successor told so. */
  readonly released = new Promise<void>((r) => (this.releasedNow = r));

  constructor(
    readonly machine: PcMachine,
    readonly hypervisor: Hypervisor,
    readonly shape: HostShape,
    readonly ram: SharedRam,
    private readonly settings: Omit<SuccessorSettings, 'wallMsBefore' | 'cpuMsBefore'>,
    /** The status pipe to the launcher when this process is itself a successor (fd 5), else null. */
    private readonly statusFd: number | null = null,
    private readonly startedAt = { wall: performance.now(), cpu: process.cpuUsage(), wallBefore: 0, cpuBefore: 0 },
  ) {}

  async update(opts: UpdateOptions = {}): Promise<UpdateReport> {
    if (this.busy) throw new Error('an update is already under way');
    if (this.handedOver) throw new Error('this process has already handed its VMs over');
    if (this.machine.exit) throw new Error('the machine has already stopped');
    this.busy = true;
    try {
      return await this.updateOnce(opts);
    } finally {
      this.busy = false;
    }
  }

  private successorCli(to: string | undefined): string {
    const root = to === undefined ? REPO_ROOT : resolve(to);
    const cli = join(root, 'tools/firmament.mjs');
    if (!existsSync(cli)) throw new Error(`--to ${to}: no tools/firmament.mjs there (expected a Firmament checkout or installed copy)`);
    return cli;
  }

  private async updateOnce(opts: UpdateOptions): Promise<UpdateReport> {
    const cli = this.successorCli(opts.to);
    const m = this.machine;
    const out = opts.output ?? 'inherit';
    const stdio: StdioOptions = ['ignore', out, out, this.ram.fd, 'pipe', this.statusFd ?? 'pipe'];
    const args = [cli, 'takeover', '--host-bytes', String(this.shape.hostBytes), '--pcpus', String(this.shape.pcpus), '--pace', this.shape.pace, ...(this.shape.timerSlackMs !== undefined ? ['--timer-slack', String(this.shape.timerSlackMs)] : [])];
    const t0 = performance.now();
    let child: ChildProcess;
    try {
      child = spawn(process.execPath, args, { stdio, env: process.env });
    } catch (e) {
      return { ok: false, rolledBack: true, reason: `could not start ${cli}: ${(e as Error).message}`, phase: 'spawn', pausedMs: 0 };
    }
    const exited = new Promise<string>((res) => child.once('exit', (code, signal) => res(signal ? `killed by ${signal}` : `exited with status ${code}`)));
    child.once('error', () => {});
    const channel = new UpdateChannel((child.stdio as unknown as Socket[])[FD_CHANNEL]!);
    const kill = async (): Promise<string> => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      return exited;
    };
    const expect = async <T extends UpdateMessage['type']>(want: T[], timeoutMs: number): Promise<{ msg: Extract<UpdateMessage, { type: T }>; payload: Uint8Array }> => {
      const got = await channel.next(timeoutMs);
      if (!(want as string[]).includes(got.msg.type)) throw new Error(`the successor sent '${got.msg.type}', expected ${want.join(' or ')}`);
      return got as { msg: Extract<UpdateMessage, { type: T }>; payload: Uint8Array };
    };
    const why = async (e: unknown): Promise<string> => {
      if (e instanceof TimeoutError) return `the successor did not answer in time (${e.message}); it was killed (${await kill()})`;
      const status = await Promise.race([exited, new Promise<string>((r) => setTimeout(() => r(''), 2000))]);
      if (status) return `the successor died (${status}) before it confirmed: ${(e as Error).message}`;
      return `${(e as Error).message}; the successor was killed (${await kill()})`;
    };

    // 1. Preparation: guests keep running in this process.
    let ready: Extract<UpdateMessage, { type: 'ready' }>;
    try {
      ready = (await expect(['ready'], opts.readyTimeoutMs ?? DEFAULT_READY_TIMEOUT_MS)).msg;
    } catch (e) {
      const reason = await why(e);
      m.log('live-update', `update refused before the pause: ${reason}`);
      return { ok: false, rolledBack: true, reason, phase: 'prepare', pausedMs: 0 };
    }
    const prepareMs = performance.now() - t0;
    // A rehearsal while the guests run: the successor adopts a record taken now and drops it, which
    // also refuses early (no pause at all) what it would refuse later, and runs its code paths warm.
    try {
      // Recording a few times also warms this side's recording path (V8 compiles it after a few runs).
      let preview: Uint8Array = new Uint8Array(0);
      for (let i = 0; i < 3; i++) preview = encodeSnapshot(saveLiveState(this.hypervisor, this.shape));
      channel.send({ type: 'preview' }, preview);
      const r = await expect(['rehearsed', 'refused'], opts.readyTimeoutMs ?? DEFAULT_READY_TIMEOUT_MS);
      if (r.msg.type === 'refused') throw new Refused(r.msg.reason);
    } catch (e) {
      const reason = e instanceof Refused ? `the new version refused the state: ${e.message}` : await why(e);
      if (e instanceof Refused) await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]).then(() => kill());
      m.log('live-update', `update refused before the pause: ${reason}`);
      return { ok: false, rolledBack: true, reason, phase: 'prepare', pausedMs: 0 };
    }
    if (this.machine.exit) {
      await kill();
      throw new Error('the machine stopped while the successor prepared');
    }

    // 2. Pause between scheduling rounds: this code runs while the machine yields, so no CPU is inside a run.
    const wasPaused = m.paused;
    m.pauseAfterRound();
    const pausedAt = epochMs();
    const tPause = performance.now();
    const cpuPause = process.cpuUsage();
    let payload: Uint8Array;
    try {
      payload = encodeSnapshot(saveLiveState(this.hypervisor, this.shape));
    } catch (e) {
      if (!wasPaused) m.resume();
      await kill();
      throw e;
    }
    const saveMs = performance.now() - tPause;
    // CPU time too: on a loaded host the wall time of a few milliseconds of work is mostly waiting for a core.
    const saveCpuMs = cpuMs(process.cpuUsage(cpuPause));
    const settings: SuccessorSettings = {
      ...this.settings,
      wallMsBefore: this.startedAt.wallBefore + (performance.now() - this.startedAt.wall),
      cpuMsBefore: this.startedAt.cpuBefore + cpuMs(process.cpuUsage(this.startedAt.cpu)),
    };
    channel.send({ type: 'state', pausedAt, settings }, payload);

    // 3. Validation and adoption in the successor.
    let adopted: Extract<UpdateMessage, { type: 'adopted' }>;
    try {
      const r = await expect(['adopted', 'refused'], opts.timeoutMs ?? DEFAULT_TAKEOVER_TIMEOUT_MS);
      if (r.msg.type === 'refused') throw new Refused(r.msg.reason);
      adopted = r.msg as Extract<UpdateMessage, { type: 'adopted' }>;
    } catch (e) {
      const reason = e instanceof Refused ? `the new version refused the state: ${e.message}` : await why(e);
      if (e instanceof Refused) await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]).then(() => kill());
      const pausedMs = performance.now() - tPause;
      if (!wasPaused) m.resume();
      m.log('live-update', `rolled back after ${pausedMs.toFixed(1)} ms: ${reason}`);
      return { ok: false, rolledBack: true, reason, phase: 'takeover', pausedMs };
    }

    // 4. Commit: this process stops touching RAM and never runs these VMs again.
    this.handedOver = true;
    m.log('live-update', `handed over to pid ${ready.pid}`);
    const goAt = epochMs();
    channel.send({ type: 'go', sentAt: goAt });
    let running: Extract<UpdateMessage, { type: 'running' }>;
    try {
      running = (await expect(['running'], opts.timeoutMs ?? DEFAULT_TAKEOVER_TIMEOUT_MS)).msg;
    } catch (e) {
      // Past the commit there is no way back: the successor may already have run guest code.
      m.stop(`live update: the successor failed after the commit: ${(e as Error).message}`);
      throw new Error(`the successor (pid ${ready.pid}) failed after it took the VMs over: ${(e as Error).message}`);
    }
    m.stop(`handed over to pid ${ready.pid}`);
    // The monitor answers this request, then its socket goes to the successor.
    setTimeout(() => {
      void this.releaseMonitor()
        .then(() => {
          channel.send({ type: 'released' });
          return channel.closeFlushed();
        })
        .then(() => this.releasedNow());
    }, 20);
    if (this.statusFd === null) this.statusIn = (child.stdio as unknown as (Socket | null)[])[FD_STATUS] ?? null;
    return {
      ok: true,
      from: { pid: process.pid, path: REPO_ROOT },
      to: { pid: ready.pid, path: dirname(dirname(cli)), hcVersion: ready.hcVersion, liveUpdateVersion: ready.liveUpdateVersion },
      prepareMs: round(prepareMs),
      adoptMs: round(goAt - pausedAt),
      phases: { saveMs: round(saveMs), successorAdoptMs: round(adopted.adoptMs), saveCpuMs: round(saveCpuMs), ...(adopted.adoptCpuMs !== undefined ? { successorAdoptCpuMs: round(adopted.adoptCpuMs) } : {}) },
      ...(adopted.how !== undefined ? { successorAdopted: adopted.how } : {}),
      blackout: this.hypervisor.vms.map((vm) => {
        const first = running.firstSlices.find((f) => f.vm === vm.name)?.at ?? running.resumedAt;
        return { vm: vm.name, blackoutMs: round(first - pausedAt), oldSideMs: round(goAt - pausedAt), newSideMs: round(first - running.goReceivedAt) };
      }),
      stateBytes: payload.length,
      shm: { inode: this.ram.info().inode, successorInode: ready.inode },
      rssAnonKiB: { beforeAdopt: adopted.rssAnonBeforeKiB, afterAdopt: adopted.rssAnonAfterKiB },
      guestRamBytes: this.hypervisor.vms.reduce((n, vm) => n + vm.vmMemory.ramBytes, 0),
    };
  }

  /**
   * After the commit: the launcher (the process the user started) waits for
   * the last successor's exit status on the status pipe and returns it; a
   * successor that handed over just ends. Engines and the RAM mapping go first.
   */
  async afterHandover(): Promise<number> {
    this.machine.close();
    this.ram.close();
    if (this.statusFd !== null || !this.statusIn) return 0;
    const status = await readStatus(this.statusIn);
    if (status === null) {
      process.stderr.write('firmament: the updated process ended without reporting an exit status\n');
      return 70;
    }
    return status;
  }
}

class Refused extends Error {}

function round(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}

export function cpuMs(u: NodeJS.CpuUsage): number {
  return (u.user + u.system) / 1000;
}

/** The status line the last process of a chain writes to fd 5 ("<code>\n"); null at EOF without one. */
function readStatus(s: Socket): Promise<number | null> {
  return new Promise((res) => {
    let text = '';
    s.setEncoding('utf8');
    s.on('data', (d: string) => {
      text += d;
      const line = /^(\d+)\n/.exec(text);
      if (line) res(Number(line[1]));
    });
    s.on('close', () => res(null));
    s.on('error', () => res(null));
  });
}

/** The RSS fields of a process, for reports. */
export function rssOf(pid: number | 'self' = 'self'): { rssKiB: number; anonKiB: number; shmemKiB: number } {
  return { rssKiB: procStatusKiB('VmRSS', pid), anonKiB: procStatusKiB('RssAnon', pid), shmemKiB: procStatusKiB('RssShmem', pid) };
}
