/** An anomaly notification: what the detector sends once per episode (docs/security.md). */
import type { AnomalyNotice } from '../../machine/debug/protocol.js';

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
  | 'exit-rate'
  | 'rate-drop';

/** One anomaly: the monitor's notice (machine/debug/protocol.ts has the field-by-field meaning) with its behaviour and severity typed. */
export interface Anomaly extends Omit<AnomalyNotice, 'behaviour' | 'severity'> {
  behaviour: Behaviour;
  severity: Severity;
}
