/** An anomaly notification: what the detector sends once per episode (docs/security.md). */

export type Severity = 'low' | 'medium' | 'high';

/** What the deviation looks like, named for a reader. */
export type Behaviour =
  | 'port-scan'
  | 'new-io-port'
  | 'msr-probe'
  | 'new-msr'
  | 'new-hypercall'
  | 'new-interrupt-vector'
  | 'fresh-code'
  | 'new-code'
  | 'com1-flood'
  | 'com2-flood'
  | 'memory-dirtying'
  | 'exit-rate';

export interface Anomaly {
  /** Increasing per security service. */
  id: number;
  vm: string;
  behaviour: Behaviour;
  /** The profile entry that deviated: a rate metric ("serial.com1") or a set ("ioPorts"). */
  metric: string;
  description: string;
  /** Rates: events in the window; sets: the values outside the profile (hex). */
  observed: number | string[];
  /** Rates: the threshold per window; sets: how many values the profile allows. */
  expected: number | string;
  /** The sliding window of guest time the observation covers (virtual ms of the VM's clock). */
  window: { fromMs: number; toMs: number };
  severity: Severity;
  /** Guest RIP of the first out-of-profile access (sets), or of the vCPU whose slice crossed the threshold (rates). */
  rip: string;
  /** When it was raised, in the VM's virtual ms; the episode goes on until `quietMs` without deviation. */
  atMs: number;
  episode: { lastMs: number; events: number };
}
