/** Rate counts summed over the last `windowNs` of guest time, bucket by bucket. */
import { emptyRateCounts, RATE_METRICS, type RateCounts } from './metrics.js';
import type { Bucket } from './behaviour-observer.js';

export class SlidingWindow {
  private readonly buckets: Bucket[] = [];
  readonly sum: RateCounts = emptyRateCounts();

  constructor(readonly windowNs: number) {}

  /** Adds a bucket and drops those that ended a window or more before it. */
  push(b: Bucket): void {
    this.buckets.push(b);
    for (const m of RATE_METRICS) this.sum[m] += b.counts[m];
    while (this.buckets.length > 1 && this.buckets[0]!.endNs <= b.endNs - this.windowNs) {
      const old = this.buckets.shift()!;
      for (const m of RATE_METRICS) this.sum[m] -= old.counts[m];
    }
  }

  /** Guest time the window covers now (shorter than windowNs at the start). */
  get fromNs(): number {
    return this.buckets[0]?.startNs ?? 0;
  }
}
