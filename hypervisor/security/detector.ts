/**
 * The detector for one VM: holds its observations to a profile and raises
 * one anomaly per episode. Rates are checked when a bucket closes, against
 * the sum over the sliding window (above a threshold, or below a floor once
 * the window is full); first touches outside a profile set are
 * gathered until the bucket closes, so a scan is reported as one anomaly
 * naming the ports it hit. An episode ends after `quietMs` of guest time
 * without a deviation of the same metric.
 */
import type { Vm } from '../vm.js';
import type { Bucket, FirstTouch, ObserverSink } from './behaviour-observer.js';
import { RATE_METRICS, type RateMetric, type SetMetric } from './metrics.js';
import type { BehaviourProfile } from './profile.js';
import { SlidingWindow } from './sliding-window.js';
import type { Anomaly, Behaviour, Severity } from './anomaly.js';

const MS = 1_000_000;
/** This many ports (or MSRs) outside the profile within one bucket is a scan (a probe), not a stray access. */
export const SCAN_MIN = 4;
/** Values listed in a description (the anomaly keeps them all, up to MAX_LISTED). */
const SHOWN = 6;
const MAX_LISTED = 256;

const hex = (n: number | bigint): string => `0x${n.toString(16)}`;

interface Episode {
  anomaly: Anomaly;
  lastNs: number;
}

interface Pending {
  values: number[];
  written: boolean;
  firstRip: bigint;
  firstNs: number;
}

export class Detector implements ObserverSink {
  private readonly window: SlidingWindow;
  private readonly episodes = new Map<string, Episode>();
  private readonly pending = new Map<SetMetric, Pending>();

  /** Guest time of the first bucket: floors hold only once the window is full. */
  private firstNs: number | null = null;

  constructor(
    readonly profile: BehaviourProfile,
    private readonly raise: (a: Omit<Anomaly, 'id'>) => Anomaly,
  ) {
    this.window = new SlidingWindow(profile.windowMs * MS);
  }

  firstTouch(_vm: Vm, t: FirstTouch): void {
    const allowed = this.profile.sets[t.set];
    if (!allowed || allowed.has(t.value)) return;
    let p = this.pending.get(t.set);
    if (!p) this.pending.set(t.set, (p = { values: [], written: false, firstRip: t.rip, firstNs: t.atNs }));
    if (p.values.length < MAX_LISTED) p.values.push(t.value);
    if (t.written) p.written = true;
  }

  bucket(vm: Vm, b: Bucket): void {
    this.window.push(b);
    const windowFromMs = this.window.fromNs / MS;
    for (const [set, p] of this.pending) this.setDeviation(vm, set, p, b.endNs);
    this.pending.clear();
    for (const m of RATE_METRICS) {
      const limit = this.profile.thresholds[m];
      if (limit === undefined) continue;
      const observed = this.window.sum[m];
      if (observed > limit) this.rateDeviation(vm, m, observed, limit, windowFromMs, b);
    }
    // The drop rule: a steady rate that fell below its floor over a whole window (not a VM that ended).
    this.firstNs ??= b.startNs;
    if (b.endNs - this.firstNs < this.profile.windowMs * MS || vm.state === 'stopped') return;
    for (const m of RATE_METRICS) {
      const floor = this.profile.floors[m];
      if (floor !== undefined && this.window.sum[m] < floor) this.dropDeviation(vm, m, this.window.sum[m], floor, windowFromMs, b);
    }
  }

  private dropDeviation(vm: Vm, m: RateMetric, observed: number, floor: number, fromMs: number, b: Bucket): void {
    const span = `${Math.round(b.endNs / MS - fromMs)} ms`;
    const what = m === 'serial.com1' ? 'COM1 output' : m === 'serial.com2' ? 'COM2 output' : m === 'dirtyPages' ? 'memory writes' : m === 'newCodePages' ? 'new code' : `${m.slice('exits.'.length)} exits`;
    const unit = m.startsWith('serial.') ? ' bytes' : m === 'dirtyPages' ? ' pages' : '';
    const description = `${what} ${observed === 0 ? 'stopped' : 'dropped'}: ${observed}${unit} in ${span}, the profile expects at least ${floor}`;
    this.episode(`drop:${m}`, b.endNs, () => ({ vm: vm.name, behaviour: 'rate-drop', metric: m, description, observed, expected: floor, window: { fromMs, toMs: b.endNs / MS }, severity: observed === 0 ? 'medium' : 'low', rip: hex(b.rip), atMs: b.endNs / MS, episode: { lastMs: b.endNs / MS, events: 1 } }), (a) => {
      if (typeof a.observed === 'number' && observed < a.observed) a.observed = observed;
    });
  }

  private rateDeviation(vm: Vm, m: RateMetric, observed: number, limit: number, fromMs: number, b: Bucket): void {
    const ratio = limit > 0 ? observed / limit : Infinity;
    const severity: Severity = ratio >= 10 ? 'high' : ratio >= 3 ? 'medium' : 'low';
    const span = `${Math.round(b.endNs / MS - fromMs)} ms`;
    let behaviour: Behaviour;
    let description: string;
    if (m === 'serial.com1' || m === 'serial.com2') {
      const port = m === 'serial.com1' ? 'COM1' : 'COM2';
      behaviour = m === 'serial.com1' ? 'com1-flood' : 'com2-flood';
      description = `${port} flood: ${observed} bytes sent in ${span}, the profile allows ${limit}`;
    } else if (m === 'dirtyPages') {
      behaviour = 'memory-dirtying';
      description = `dirties memory fast: ${observed} pages written in ${span} (${observed * 4} KiB), the profile allows ${limit}`;
    } else {
      behaviour = 'exit-rate';
      description = `${m.slice('exits.'.length)} exits: ${observed} in ${span}, the profile allows ${limit}`;
    }
    this.episode(m, b.endNs, () => ({ vm: vm.name, behaviour, metric: m, description, observed, expected: limit, window: { fromMs, toMs: b.endNs / MS }, severity, rip: hex(b.rip), atMs: b.endNs / MS, episode: { lastMs: b.endNs / MS, events: 1 } }), (a) => {
      if (typeof a.observed === 'number' && observed > a.observed) a.observed = observed;
    });
  }

  private setDeviation(vm: Vm, set: SetMetric, p: Pending, nowNs: number): void {
    const allowed = this.profile.sets[set]!;
    const list = p.values.map(hex);
    const shown = `${list.slice(0, SHOWN).join(', ')}${list.length > SHOWN ? `, ... (${list.length} in all)` : ''}`;
    let behaviour: Behaviour;
    let description: string;
    let severity: Severity = 'medium';
    switch (set) {
      case 'ioPorts':
        behaviour = p.values.length >= SCAN_MIN ? 'port-scan' : 'new-io-port';
        description = behaviour === 'port-scan' ? `I/O port scan: ${p.values.length} ports outside the profile touched (${shown})` : `I/O ports outside the profile: ${shown}`;
        if (behaviour === 'port-scan') severity = 'high';
        break;
      case 'msrs':
        behaviour = p.values.length >= SCAN_MIN ? 'msr-probe' : 'new-msr';
        description = behaviour === 'msr-probe' ? `MSR probe: ${p.values.length} MSRs outside the profile accessed (${shown})` : `MSRs outside the profile accessed: ${shown}`;
        if (behaviour === 'msr-probe') severity = 'high';
        break;
      case 'hypercalls':
        behaviour = 'new-hypercall';
        description = `hypercalls outside the profile: ${p.values.join(', ')}`;
        break;
      case 'interruptVectors':
        behaviour = 'new-interrupt-vector';
        description = `interrupt vectors outside the profile: ${shown}`;
        severity = 'low';
        break;
      case 'codePages':
        behaviour = p.written ? 'fresh-code' : 'new-code';
        description = p.written ? `executes freshly written code: guest-physical page${list.length > 1 ? 's' : ''} ${shown} written, then executed, outside the profile's code` : `code outside the profile executed: guest-physical page${list.length > 1 ? 's' : ''} ${shown}`;
        severity = p.written ? 'high' : 'medium';
        break;
    }
    const atMs = p.firstNs / MS;
    this.episode(set, nowNs, () => ({ vm: vm.name, behaviour, metric: set, description, observed: list, expected: `${allowed.size} values in the profile`, window: { fromMs: atMs, toMs: nowNs / MS }, severity, rip: hex(p.firstRip), atMs: nowNs / MS, episode: { lastMs: nowNs / MS, events: p.values.length } }), (a) => {
      if (Array.isArray(a.observed)) for (const v of list) if (a.observed.length < MAX_LISTED && !a.observed.includes(v)) a.observed.push(v);
    });
  }

  /** Raises a new anomaly unless an episode of this metric is still going on, which it extends instead. */
  private episode(key: string, nowNs: number, make: () => Omit<Anomaly, 'id'>, extend: (a: Anomaly) => void): void {
    const e = this.episodes.get(key);
    if (e && nowNs - e.lastNs <= this.profile.quietMs * MS) {
      e.lastNs = nowNs;
      e.anomaly.episode.lastMs = nowNs / MS;
      e.anomaly.episode.events++;
      extend(e.anomaly);
      return;
    }
    this.episodes.set(key, { anomaly: this.raise(make()), lastNs: nowNs });
  }
}
