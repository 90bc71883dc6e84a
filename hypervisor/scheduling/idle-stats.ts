/**
 * Per-vCPU idling counters: what the idle controller decided, how long the
 * vCPU spent idle in each state, and how long a wake-up took to reach the
 * guest's next instruction. All times are the machine's virtual nanoseconds.
 */
import type { IdleDecision, IdleStatsReport } from '../../machine/inspect/idle-report.js';
import type { IdleMode, IdlePolicy } from './idle-controller.js';

/** Wake latencies kept for percentiles; older ones are overwritten in a ring (bounded memory). */
const LATENCY_SAMPLES = 65_536;

// The report's shape belongs to the views that show it (machine/ never imports hypervisor/).
export type { IdleDecision, IdleStatsReport } from '../../machine/inspect/idle-report.js';

export class IdleStats {
  readonly entries = { native: 0, emulated: 0 };
  readonly instructions = { hlt: 0, mwait: 0 };
  readonly timeNs = { native: 0, emulated: 0 };
  switches = 0;
  readonly decisions = { native: 0, emulated: 0, released: 0, preempted: 0 };
  lastDecision: IdleDecision | null = null;
  pcpuNs = 0;
  runNs = 0;
  private readonly latencies: number[] = [];
  private latencyCount = 0;
  private latencySum = 0;
  private latencyMax = 0;

  recordLatency(ns: number): void {
    if (this.latencies.length < LATENCY_SAMPLES) this.latencies.push(ns);
    else this.latencies[this.latencyCount % LATENCY_SAMPLES] = ns;
    this.latencyCount++;
    this.latencySum += ns;
    if (ns > this.latencyMax) this.latencyMax = ns;
  }

  /** The kept wake latencies (at most the last 65536), for pooling across vCPUs. */
  latencySamples(): readonly number[] {
    return this.latencies;
  }

  report(policy: IdlePolicy): IdleStatsReport {
    const sorted = Float64Array.from(this.latencies).sort();
    return {
      policy,
      entries: { ...this.entries },
      instructions: { ...this.instructions },
      timeNs: { ...this.timeNs },
      wakeLatencyNs: { count: this.latencyCount, p50: percentile(sorted, 0.5), p99: percentile(sorted, 0.99), max: this.latencyMax, mean: this.latencyCount ? Math.round(this.latencySum / this.latencyCount) : 0 },
      switches: this.switches,
      decisions: { ...this.decisions, last: this.lastDecision },
      pcpuNs: this.pcpuNs,
      runNs: this.runNs,
    };
  }
}

/** Nearest-rank percentile of sorted samples (0 when there are none). */
export function percentile(sorted: ArrayLike<number>, q: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}
