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

interface ChildTimer {
  id: number;
  deadline: number;
  seq: number;
  cb: TimerCallback;
  parent: TimerHandle | null;
}

/**
 * A VM's own timeline, driven by the machine's: it runs at the machine's pace
 * while the VM runs and stands still while it is paused, so a VM can be
 * paused, saved, and restored into another machine at the very nanosecond it
 * left. Timers live on the parent with translated deadlines (ties still fire
 * in scheduling order); pausing takes them off, resuming puts them back.
 */
export class ChildClock implements VirtualClock {
  /** parent time - own time, while running. */
  private offset: number;
  private pausedAt: number | null = null;
  private nextId = 1;
  private seq = 0;
  private timers: ChildTimer[] = [];

  constructor(
    private readonly parent: Timeline,
    startNs = 0,
  ) {
    this.offset = parent.nowNs() - startNs;
  }

  nowNs(): number {
    return this.pausedAt ?? this.parent.nowNs() - this.offset;
  }

  get paused(): boolean {
    return this.pausedAt !== null;
  }

  schedule(deadlineNs: number, cb: TimerCallback): TimerHandle {
    const t: ChildTimer = { id: this.nextId++, deadline: Math.max(deadlineNs, this.nowNs()), seq: this.seq++, cb, parent: null };
    this.timers.push(t);
    if (this.pausedAt === null) this.arm(t);
    return { id: t.id };
  }

  cancel(handle: TimerHandle): void {
    const i = this.timers.findIndex((t) => t.id === handle.id);
    if (i < 0) return;
    const t = this.timers[i]!;
    this.timers.splice(i, 1);
    if (t.parent) this.parent.cancel(t.parent);
  }

  /** Own time stops; pending timers wait. */
  pause(): void {
    if (this.pausedAt !== null) return;
    this.pausedAt = this.nowNs();
    for (const t of this.timers) this.disarm(t);
  }

  /** Own time goes on from where it stopped, whatever the machine's time is now. */
  resume(): void {
    if (this.pausedAt === null) return;
    this.offset = this.parent.nowNs() - this.pausedAt;
    this.pausedAt = null;
    for (const t of [...this.timers].sort((a, b) => a.seq - b.seq)) this.arm(t);
  }

  /** For restore: own time becomes `ns` and every timer is dropped (devices re-arm). */
  reset(ns: number): void {
    for (const t of this.timers) this.disarm(t);
    this.timers = [];
    if (this.pausedAt !== null) this.pausedAt = ns;
    else this.offset = this.parent.nowNs() - ns;
  }

  /** The VM is gone: nothing of it may fire again. */
  detach(): void {
    for (const t of this.timers) this.disarm(t);
    this.timers = [];
  }

  private arm(t: ChildTimer): void {
    t.parent = this.parent.schedule(t.deadline + this.offset, () => {
      const i = this.timers.indexOf(t);
      if (i >= 0) this.timers.splice(i, 1);
      t.parent = null;
      t.cb(this.nowNs());
    });
  }

  private disarm(t: ChildTimer): void {
    if (t.parent) this.parent.cancel(t.parent);
    t.parent = null;
  }
}
