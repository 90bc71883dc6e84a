/** Prometheus metrics of the function service (GET /metrics), with prom-client. */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { FunctionPool } from './pool.js';

const LATENCY_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];
const PHASE_BUCKETS = [0.00002, 0.00005, 0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.05, 0.25, 1];

/** The spans of an invocation, in order (docs/functions.md, "The warm path"). */
export const PHASES = ['queue', 'assign', 'start', 'run', 'reply'] as const;
export type Phase = (typeof PHASES)[number];

export class ServiceMetrics {
  readonly registry = new Registry();
  readonly invocations = new Counter({ name: 'firmament_fn_invocations_total', help: 'Function invocations by function and outcome', labelNames: ['function', 'status'] as const, registers: [this.registry] });
  readonly firstUser = new Histogram({ name: 'firmament_fn_first_user_instruction_seconds', help: 'Request arrival to the first instruction of the function', labelNames: ['shape'] as const, buckets: LATENCY_BUCKETS, registers: [this.registry] });
  readonly total = new Histogram({ name: 'firmament_fn_request_seconds', help: 'Request arrival to response, by outcome', labelNames: ['status'] as const, buckets: LATENCY_BUCKETS, registers: [this.registry] });
  readonly phases = new Histogram({ name: 'firmament_fn_phase_seconds', help: 'Where an invocation spends its time: queue (arrival to the pool), assign (VM chosen, invocation written), start (to the first user instruction), run (user code to its answer), reply (answer to response sent)', labelNames: ['phase'] as const, buckets: PHASE_BUCKETS, registers: [this.registry] });
  readonly rejected = new Counter({ name: 'firmament_fn_rejected_total', help: 'Requests refused: pool exhausted (503) or bad input (4xx)', labelNames: ['reason'] as const, registers: [this.registry] });
  readonly transactions = new Counter({ name: 'firmament_fn_transactions_total', help: 'Transaction checkpoints by event (parked, resumed, refused, expired, external-failed)', labelNames: ['event'] as const, registers: [this.registry] });

  constructor(pool: FunctionPool, functions: () => number) {
    const vms = new Gauge({ name: 'firmament_fn_pool_vms', help: 'VMs of the pool by shape and state', labelNames: ['shape', 'state'] as const, registers: [this.registry] });
    const maxVms = new Gauge({ name: 'firmament_fn_pool_max_vms', help: 'VMs the host RAM has room for', registers: [this.registry] });
    const frames = new Gauge({ name: 'firmament_fn_host_frames', help: 'Host frames of the service machine by state', labelNames: ['state'] as const, registers: [this.registry] });
    const clones = new Gauge({ name: 'firmament_fn_clones_created', help: 'Linked clones created since start', registers: [this.registry] });
    const fns = new Gauge({ name: 'firmament_fn_functions', help: 'Functions uploaded', registers: [this.registry] });
    // The pool is read when scraped, not on every change.
    const collect = (): void => {
      const s = pool.status();
      vms.reset();
      for (const sh of s.shapes) {
        vms.set({ shape: sh.name, state: 'warm' }, sh.warm);
        vms.set({ shape: sh.name, state: 'busy' }, sh.busy);
      }
      maxVms.set(s.maxVms);
      frames.set({ state: 'used' }, s.hostFramesUsed);
      frames.set({ state: 'total' }, s.hostFramesTotal);
      clones.set(pool.counters.clonesCreated);
      fns.set(functions());
    };
    this.collect = collect;
  }

  private readonly collect: () => void;

  async text(): Promise<string> {
    this.collect();
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
