/**
 * The idling counters of one vCPU as the views show them (run --json, the
 * monitor's vcpus, the TUI vCPU pane). The hypervisor's scheduler fills it
 * (hypervisor/scheduling/idle-stats.ts). All times are virtual nanoseconds.
 */

/** How a vCPU's idle instruction runs: keeping its pCPU, or giving it up. */
export type IdleMode = 'native' | 'emulated';
/** The controller's policy (--idle-policy). */
export type IdlePolicy = 'native' | 'emulated' | 'adaptive' | 'haltpoll';

export interface IdleDecision {
  atNs: number;
  mode: IdleMode;
  /** Why the controller chose it (one short phrase). */
  reason: string;
  /** The idle duration it predicted, or null when the vCPU had no history yet. */
  predictedNs: number | null;
}

/** The JSON shape shown in `run --json`, the monitor and the TUI. */
export interface IdleStatsReport {
  policy: IdlePolicy;
  entries: { native: number; emulated: number };
  instructions: { hlt: number; mwait: number };
  timeNs: { native: number; emulated: number };
  wakeLatencyNs: { count: number; p50: number; p99: number; max: number; mean: number };
  switches: number;
  decisions: { native: number; emulated: number; released: number; preempted: number; last: IdleDecision | null };
  /** Virtual time this vCPU held a pCPU: running, switching in, or waiting natively on a contended pCPU. */
  pcpuNs: number;
  /** Virtual time it ran guest code (its executed units). */
  runNs: number;
}
