import type { TimerCallback, TimerHandle, VirtualClock } from './devices/device.js';

interface Timer {
  id: number;
  deadline: number;
  seq: number;
  cb: TimerCallback;
}

/**
 * The machine's virtual timeline: a clock plus a deadline queue.
 * Ties fire in scheduling order, which keeps runs deterministic.
 */
export class Timeline implements VirtualClock {
  private now = 0;
  private nextId = 1;
  private seq = 0;
  private timers: Timer[] = [];

  nowNs(): number {
    return this.now;
  }

  schedule(deadlineNs: number, cb: TimerCallback): TimerHandle {
    const t: Timer = { id: this.nextId++, deadline: Math.max(deadlineNs, this.now), seq: this.seq++, cb };
    // Insert keeping the queue sorted; queues here hold a handful of timers.
    let i = this.timers.length;
    while (i > 0 && compare(this.timers[i - 1]!, t) > 0) i--;
    this.timers.splice(i, 0, t);
    return { id: t.id };
  }

  cancel(handle: TimerHandle): void {
    const i = this.timers.findIndex((t) => t.id === handle.id);
    if (i >= 0) this.timers.splice(i, 1);
  }

  /** The earliest pending deadline, or Infinity. */
  nextDeadline(): number {
    return this.timers.length > 0 ? this.timers[0]!.deadline : Infinity;
  }

  /** Move time forward (never backward) and fire every timer that became due. */
  advanceTo(ns: number): void {
    if (ns > this.now) this.now = ns;
    while (this.timers.length > 0 && this.timers[0]!.deadline <= this.now) {
      const t = this.timers.shift()!;
      t.cb(this.now);
    }
  }

  /** For restore: set time without firing anything and drop all timers (devices re-arm). */
  reset(ns: number): void {
    this.now = ns;
    this.timers = [];
  }
}

function compare(a: Timer, b: Timer): number {
  return a.deadline - b.deadline || a.seq - b.seq;
}
