/**
 * Learns a behaviour profile from a running VM: the most each rate reached
 * in any sliding window, its mean, and every set member the VM touched since
 * it was first observed. Thresholds allow twice the learned peak plus a
 * per-metric slack, so a benign guest's jitter stays inside; a serial link
 * that carried bytes in every full window gets a floor of 1 (it must not
 * fall silent).
 */
import type { Vm } from '../vm.js';
import type { BehaviourObserver, Bucket, FirstTouch, ObserverSink } from './behaviour-observer.js';
import { emptyRateCounts, RATE_METRICS, SET_METRICS, DEFAULT_WINDOW_MS, type RateMetric } from './metrics.js';
import type { BehaviourProfile } from './profile.js';
import { SlidingWindow } from './sliding-window.js';

const MS = 1_000_000;

/** Headroom above 2x the learned peak, per window, for rates that are bursty at small counts. */
const SLACK: Partial<Record<RateMetric, number>> = { 'serial.com1': 256, 'serial.com2': 256, dirtyPages: 64 };
const DEFAULT_SLACK = 50;
/** Rates the learner leaves unchecked: new code pages are judged by the codePages set. */
const UNCHECKED: readonly RateMetric[] = ['newCodePages'];
/**
 * Rates that get a floor (the drop-to-zero rule) when they were above zero in every full window
 * of the learning run: the serial links, where a gateway's telemetry and status go. Exit rates
 * are left out: a benign guest's I/O comes and goes with its phases.
 */
const FLOORED: readonly RateMetric[] = ['serial.com1', 'serial.com2'];
/** Full windows the learning run must have watched before a steady rate gets a floor. */
const FLOOR_MIN_CHECKS = 3;

export class ProfileLearner implements ObserverSink {
  private readonly window: SlidingWindow;
  private readonly peak = emptyRateCounts();
  private readonly total = emptyRateCounts();
  /** The least each rate summed to over a full window, and how many full windows there were. */
  private readonly leastFull = emptyRateCounts();
  private fullChecks = 0;
  readonly startNs: number;
  private lastNs: number;

  constructor(
    private readonly observer: BehaviourObserver,
    readonly windowMs = DEFAULT_WINDOW_MS,
  ) {
    this.window = new SlidingWindow(windowMs * MS);
    this.startNs = observer.vm.clock.nowNs();
    this.lastNs = this.startNs;
  }

  bucket(_vm: Vm, b: Bucket): void {
    this.window.push(b);
    this.lastNs = b.endNs;
    for (const m of RATE_METRICS) {
      this.total[m] += b.counts[m];
      if (this.window.sum[m] > this.peak[m]) this.peak[m] = this.window.sum[m];
    }
    if (b.endNs - this.startNs < this.windowMs * MS) return;
    for (const m of RATE_METRICS) if (this.fullChecks === 0 || this.window.sum[m] < this.leastFull[m]) this.leastFull[m] = this.window.sum[m];
    this.fullChecks++;
  }

  firstTouch(_vm: Vm, _t: FirstTouch): void {}

  get learnedNs(): number {
    return this.lastNs - this.startNs;
  }

  profile(): BehaviourProfile {
    const seconds = Math.max(this.learnedNs, 1) / 1e9;
    const rates: BehaviourProfile['rates'] = {};
    const thresholds: BehaviourProfile['thresholds'] = {};
    for (const m of RATE_METRICS) {
      rates[m] = { meanPerSecond: Math.round((this.total[m] / seconds) * 10) / 10, maxPerWindow: this.peak[m] };
      if (!UNCHECKED.includes(m)) thresholds[m] = Math.ceil(this.peak[m] * 2 + (SLACK[m] ?? DEFAULT_SLACK));
    }
    const floors: BehaviourProfile['floors'] = {};
    if (this.fullChecks >= FLOOR_MIN_CHECKS) for (const m of FLOORED) if (this.leastFull[m] > 0) floors[m] = 1;
    const sets: BehaviourProfile['sets'] = {};
    for (const k of SET_METRICS) sets[k] = new Set(this.observer.seen[k]);
    return {
      vm: this.observer.vm.name,
      learned: { fromMs: this.startNs / MS, toMs: this.lastNs / MS },
      bucketMs: this.observer.bucketNs / MS,
      windowMs: this.windowMs,
      rates,
      sets,
      thresholds,
      floors,
      quietMs: 2000,
    };
  }
}
