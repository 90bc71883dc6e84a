/**
 * Decides, per vCPU and per idle instruction (HLT, MWAIT), how the idle
 * period runs:
 *  - native: the vCPU keeps its pCPU, which waits for this vCPU's wake event;
 *    the vCPU resumes at once (lowest latency), but the pCPU does nothing else;
 *  - emulated: the vCPU gives its pCPU up (another vCPU may run there) and is
 *    switched back in on its wake event, paying a context switch each way.
 *
 * The adaptive policy compares what each costs, in pCPU nanoseconds of
 * virtual time, from a prediction of this idle period:
 *  - nobody waits for a pCPU: holding it costs nothing, so native;
 *  - someone waits: native costs the waiters the predicted idle time; emulated
 *    costs two switches plus this vCPU's own wait for a pCPU when it wakes
 *    (learned from its past emulated wake-ups). The cheaper one wins.
 * It decides again whenever a vCPU starts waiting while another idles natively,
 * with the idle time still expected (an idle period that has already outlived
 * its prediction is expected to last as long again).
 * KVM's halt polling only grows and shrinks one poll window per vCPU from
 * whether the last wake-up came inside it; it does not know whether anyone
 * waits, nor what a switch costs, nor how long the vCPU will wait for a pCPU.
 */

import { StateError } from '../../machine/state.js';

/** haltpoll: KVM's dynamic halt polling (docs/virt/kvm/halt-polling.rst), for comparison. */
export type { IdleMode, IdlePolicy } from '../../machine/inspect/idle-report.js';
import type { IdleMode, IdlePolicy } from '../../machine/inspect/idle-report.js';
export type IdleInstruction = 'hlt' | 'mwait';

export const IDLE_POLICIES: readonly IdlePolicy[] = ['native', 'emulated', 'adaptive', 'haltpoll'];

/** KVM's x86 defaults: halt_poll_ns 200 us, grow x2 starting at 10 us, shrink 0 (back to no polling). */
export const HALTPOLL_MAX_NS = 200_000;
const HALTPOLL_GROW_START_NS = 10_000;

/**
 * Virtual cost of one vCPU context switch on a pCPU, charged when a vCPU is
 * switched in on a pCPU that last ran another one, or comes back from an
 * emulated idle. Measured as this emulator's own switch: HostCpu.bind() of
 * one vCPU context over another (park the old context, load the new one into
 * the engine, flush its TLB): median 1.7 us over 2000 switches on the
 * 2-core reference machine (`npm run bench` measures it again), rounded up.
 * A fixed constant, so runs are deterministic.
 */
export const SWITCH_NS = 2_000;

/** Longest a pCPU waits natively for its idle vCPU while others want it (the machine's quantum). */
export const HOLD_SLOT_NS = 2_000_000;

/** Weight of the newest sample in the idle-duration and wake-latency averages: 1/2 follows phase changes within a few periods. */
const ALPHA = 0.5;

export function parseIdlePolicy(s: string | undefined, flag = '--idle-policy'): IdlePolicy {
  if (s === undefined) return 'adaptive';
  if ((IDLE_POLICIES as readonly string[]).includes(s)) return s as IdlePolicy;
  throw new Error(`${flag} ${s}: expected native, emulated or adaptive (or haltpoll, KVM's halt polling)`);
}

/** One vCPU's recent history: what the controller predicts from. */
export class IdleHistory {
  /** Exponential averages of past idle durations, per instruction (null: none seen yet). */
  private readonly idleAvg: Record<IdleInstruction, number | null> = { hlt: null, mwait: null };
  /** Average of past emulated wake latencies (switch included): what giving the pCPU up costs this vCPU. */
  emulatedLatencyAvg: number | null = null;
  /** haltpoll only: this vCPU's poll window (KVM's vcpu->halt_poll_ns). */
  pollWindowNs = 0;

  /** KVM's grow/shrink after a halt of `blockNs` (kvm_vcpu_halt: grow_halt_poll_ns / shrink_halt_poll_ns with shrink 0). */
  notePollOutcome(blockNs: number): void {
    const w = this.pollWindowNs;
    if (blockNs <= w) return;
    if (w > 0 && blockNs > HALTPOLL_MAX_NS) this.pollWindowNs = 0;
    else if (w < HALTPOLL_MAX_NS && blockNs < HALTPOLL_MAX_NS) this.pollWindowNs = Math.min(HALTPOLL_MAX_NS, w === 0 ? HALTPOLL_GROW_START_NS : w * 2);
  }

  noteIdle(kind: IdleInstruction, ns: number): void {
    const a = this.idleAvg[kind];
    this.idleAvg[kind] = a === null ? ns : a + ALPHA * (ns - a);
  }

  noteEmulatedLatency(ns: number): void {
    const a = this.emulatedLatencyAvg;
    this.emulatedLatencyAvg = a === null ? ns : a + ALPHA * (ns - a);
  }

  predict(kind: IdleInstruction): number | null {
    return this.idleAvg[kind];
  }

  /** For a VM's saved scheduling state (-1: no value yet). */
  save(): { hlt: number; mwait: number; emulatedLatency: number; pollWindow: number } {
    return { hlt: this.idleAvg.hlt ?? -1, mwait: this.idleAvg.mwait ?? -1, emulatedLatency: this.emulatedLatencyAvg ?? -1, pollWindow: this.pollWindowNs };
  }

  static parse(rec: { [k: string]: unknown }, who: string): { hlt: number; mwait: number; emulatedLatency: number; pollWindow: number } {
    const out = { hlt: 0, mwait: 0, emulatedLatency: 0, pollWindow: 0 };
    for (const k of ['hlt', 'mwait', 'emulatedLatency', 'pollWindow'] as const) {
      const v = rec[k];
      if (typeof v !== 'number' || !Number.isFinite(v) || v < -1) throw new StateError(who, k, `expected a duration in ns or -1, got ${String(v)}`);
      out[k] = v;
    }
    return out;
  }

  load(v: { hlt: number; mwait: number; emulatedLatency: number; pollWindow: number }): void {
    this.pollWindowNs = Math.max(0, v.pollWindow);
    this.idleAvg.hlt = v.hlt < 0 ? null : v.hlt;
    this.idleAvg.mwait = v.mwait < 0 ? null : v.mwait;
    this.emulatedLatencyAvg = v.emulatedLatency < 0 ? null : v.emulatedLatency;
  }
}

export interface Decision {
  mode: IdleMode;
  reason: string;
  predictedNs: number | null;
  /** haltpoll: hold the pCPU at most this long, then give it up. */
  pollNs?: number;
}

export class IdleController {
  constructor(readonly policy: IdlePolicy = 'adaptive') {}

  /** At an idle instruction: `waiting` is how many runnable vCPUs have no pCPU right now. */
  onEntry(h: IdleHistory, kind: IdleInstruction, waiting: number): Decision {
    const predicted = h.predict(kind);
    if (this.policy === 'haltpoll') {
      // KVM stops polling as soon as another task is runnable (need_resched).
      if (waiting > 0) return { mode: 'emulated', reason: `haltpoll: ${waiting} waiting, no polling`, predictedNs: predicted };
      if (h.pollWindowNs === 0) return { mode: 'emulated', reason: 'haltpoll: poll window 0', predictedNs: predicted };
      return { mode: 'native', reason: `haltpoll: poll up to ${us(h.pollWindowNs)}`, predictedNs: predicted, pollNs: h.pollWindowNs };
    }
    if (this.policy !== 'adaptive') return { mode: this.policy, reason: `policy ${this.policy}`, predictedNs: predicted };
    if (waiting === 0) return { mode: 'native', reason: 'no vCPU waits for a pCPU', predictedNs: predicted };
    if (predicted === null) return { mode: 'emulated', reason: `${waiting} waiting, no history`, predictedNs: null };
    return this.compare(h, predicted, waiting);
  }

  /**
   * A vCPU idling natively while `waiting` vCPUs want a pCPU: keep holding it?
   * Fixed policies never change their mind (native keeps the pCPU until the
   * fair-share limit takes it).
   */
  reconsider(h: IdleHistory, kind: IdleInstruction, idleSoFarNs: number, waiting: number): Decision | null {
    if (this.policy === 'haltpoll') return { mode: 'emulated', reason: `haltpoll: ${waiting} waiting, polling stops`, predictedNs: h.predict(kind) };
    if (this.policy !== 'adaptive') return null;
    const predicted = h.predict(kind);
    const remaining = predicted === null ? null : predicted > idleSoFarNs ? predicted - idleSoFarNs : idleSoFarNs;
    if (remaining === null) return { mode: 'emulated', reason: `${waiting} waiting, no history`, predictedNs: null };
    const d = this.compare(h, remaining, waiting);
    return d.mode === 'native' ? null : d;
  }

  private compare(h: IdleHistory, idleNs: number, waiting: number): Decision {
    const giveUp = 2 * SWITCH_NS + (h.emulatedLatencyAvg ?? SWITCH_NS);
    if (idleNs <= giveUp) return { mode: 'native', reason: `idle ~${us(idleNs)} <= switch out+in and wait ~${us(giveUp)}`, predictedNs: Math.round(idleNs) };
    return { mode: 'emulated', reason: `idle ~${us(idleNs)} > switch out+in and wait ~${us(giveUp)}, ${waiting} waiting`, predictedNs: Math.round(idleNs) };
  }
}

function us(ns: number): string {
  return `${Math.round(ns / 100) / 10} us`;
}
