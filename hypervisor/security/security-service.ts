/**
 * The security process beside the hypervisor's exit stream: one behaviour
 * observer per VM, a detector for each VM that has a profile, profile
 * learning, and the anomaly log that the management side (monitor, TUI,
 * `firmament anomalies`) reads and follows.
 */
import type { Hypervisor } from '../hypervisor.js';
import type { Vm } from '../vm.js';
import { BehaviourObserver } from './behaviour-observer.js';
import { Detector } from './detector.js';
import { ProfileLearner } from './profile-learner.js';
import type { BehaviourProfile } from './profile.js';
import type { Anomaly } from './anomaly.js';

const MS = 1_000_000;
/** Anomalies kept for `anomalies` (the oldest go first); followers get every one. */
export const MAX_KEPT_ANOMALIES = 10_000;
/** How often a learner waiting on a VM checks whether the VM stopped (wall ms; not a busy wait). */
const STOP_POLL_MS = 50;

export class SecurityError extends Error {
  override name = 'SecurityError';
}

export class SecurityService {
  private readonly observers = new Map<Vm, BehaviourObserver>();
  private readonly detectors = new Map<Vm, { detector: Detector; detach: () => void }>();
  private readonly profiles = new Map<string, BehaviourProfile>();
  private readonly log: Anomaly[] = [];
  private readonly listeners = new Set<(a: Anomaly) => void>();
  private nextId = 1;
  private readonly learners = new Map<Vm, number>();

  constructor(
    readonly hypervisor: Hypervisor,
    private readonly opts: { bucketMs?: number } = {},
  ) {
    // Observe from the start, so a profile learned later still holds what the VM did at boot.
    for (const vm of hypervisor.vms) this.observe(vm);
  }

  /** The VM by name (default: the first), observed from now on if it was not yet. */
  vm(name?: string): Vm {
    const vms = this.hypervisor.vms;
    const vm = name === undefined ? vms[0] : vms.find((v) => v.name === name);
    if (!vm) throw new SecurityError(name === undefined ? 'no VM is running' : `no VM named '${name}' (VMs: ${vms.map((v) => v.name).join(', ') || 'none'})`);
    this.observe(vm);
    return vm;
  }

  observe(vm: Vm): BehaviourObserver {
    let o = this.observers.get(vm);
    if (!o) {
      o = new BehaviourObserver(vm, this.opts.bucketMs !== undefined ? { bucketMs: this.opts.bucketMs } : {});
      this.observers.set(vm, o);
    }
    return o;
  }

  /** Holds a VM to a profile from now on (replacing its previous one). */
  setProfile(vmName: string | undefined, profile: BehaviourProfile): Vm {
    const vm = this.vm(vmName);
    const o = this.observe(vm);
    if (profile.bucketMs * MS !== o.bucketNs) throw new SecurityError(`profile window.bucketMs ${profile.bucketMs} differs from the observer's ${o.bucketNs / MS} ms buckets`);
    this.detectors.get(vm)?.detach();
    const detector = new Detector(profile, (a) => this.raise(a));
    this.detectors.set(vm, { detector, detach: o.addSink(detector) });
    this.profiles.set(vm.name, profile);
    return vm;
  }

  profile(vmName?: string): BehaviourProfile | null {
    return this.profiles.get(this.vm(vmName).name) ?? null;
  }

  /**
   * Learns a profile over `forMs` of the VM's guest time (less if the VM
   * stops first). With `apply`, the VM is held to it from the very bucket
   * the learning ends in (no guest time passes in between).
   */
  learn(vmName: string | undefined, forMs: number, opts: { apply?: boolean } = {}): Promise<BehaviourProfile> {
    const vm = this.vm(vmName);
    const o = this.observe(vm);
    const learner = new ProfileLearner(o);
    const endNs = learner.startNs + forMs * MS;
    return new Promise((resolve) => {
      let poll: NodeJS.Timeout | undefined;
      let done = false;
      this.learners.set(vm, (this.learners.get(vm) ?? 0) + 1);
      const finish = (): void => {
        if (done) return;
        done = true;
        this.learners.set(vm, (this.learners.get(vm) ?? 1) - 1);
        detach();
        if (poll) clearInterval(poll);
        const profile = learner.profile();
        if (opts.apply && vm.state === 'running') this.setProfile(vm.name, profile);
        resolve(profile);
      };
      const detach = o.addSink({
        bucket: (v, b) => {
          learner.bucket(v, b);
          if (b.endNs >= endNs || v.state === 'stopped') finish();
        },
        firstTouch: () => {},
      });
      poll = setInterval(() => {
        if (vm.state === 'stopped') finish();
      }, STOP_POLL_MS);
      poll.unref();
    });
  }

  /** Profiles being learned on this VM right now. */
  learning(vmName?: string): number {
    return this.learners.get(this.vm(vmName)) ?? 0;
  }

  anomalies(sinceId = 0): Anomaly[] {
    return this.log.filter((a) => a.id > sinceId);
  }

  onAnomaly(listener: (a: Anomaly) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  close(): void {
    for (const d of this.detectors.values()) d.detach();
    for (const o of this.observers.values()) o.close();
    this.detectors.clear();
    this.observers.clear();
    this.listeners.clear();
  }

  private raise(a: Omit<Anomaly, 'id'>): Anomaly {
    const full: Anomaly = { id: this.nextId++, ...a };
    this.log.push(full);
    if (this.log.length > MAX_KEPT_ANOMALIES) this.log.shift();
    for (const l of this.listeners) l(full);
    return full;
  }
}
