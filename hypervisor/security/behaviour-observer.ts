/**
 * The exit-stream observer of one VM: counts exits by reason, serial bytes,
 * pages dirtied and code pages first executed per bucket of guest (virtual)
 * time, and notices the first touch of every I/O port, MSR, hypercall,
 * interrupt vector and code page. Sinks (the learner, the detector) get each
 * bucket when it closes and each first touch when it happens.
 *
 * Cheap by construction: exits are counted by the CPU layer already (the
 * bucket takes differences); the hooks on port, MSR and hypercall exits are
 * one Set lookup; a bucket closes at the end of a slice, at most once per
 * bucket, where it samples the dirty log (EXACT_EVERY below).
 */
import type { X86Cpu } from '../../machine/cpu/x86-cpu.js';
import type { Vm } from '../vm.js';
import { EXIT_REASONS, type ExitCounts } from '../exits.js';
import { DEFAULT_BUCKET_MS, emptyRateCounts, type RateCounts, type SetMetric } from './metrics.js';
import type { SerialPort, VmObserver } from './vm-observer.js';

const MS = 1_000_000;
/**
 * Dirty pages are sampled (GuestMemory.sampleDirty: no TLB shootdown, the cost of a harvest) and
 * harvested exactly (with a shootdown) every EXACT_EVERY buckets, and after any bucket that found
 * BURST_PAGES or more: a guest writing many pages is counted exactly from its second bucket on,
 * a quiet one pays for a shootdown only twice a second. Learning and watching count the same way.
 */
export const EXACT_EVERY = 5;
export const BURST_PAGES = 64;

export interface Bucket {
  startNs: number;
  endNs: number;
  counts: RateCounts;
  /** RIP of the vCPU whose slice closed the bucket. */
  rip: bigint;
}

export interface FirstTouch {
  set: SetMetric;
  value: number;
  atNs: number;
  /** Guest RIP of the access (null when only known at the end of a slice). */
  rip: bigint;
  /** For code pages: the page was written by the guest before it ran (dirty in the EPT or in a recent harvest). */
  written?: boolean;
}

export interface ObserverSink {
  bucket(vm: Vm, b: Bucket): void;
  firstTouch(vm: Vm, t: FirstTouch): void;
}

export class BehaviourObserver implements VmObserver {
  readonly bucketNs: number;
  readonly seen: Record<SetMetric, Set<number>> = { ioPorts: new Set(), msrs: new Set(), hypercalls: new Set(), interruptVectors: new Set(), codePages: new Set() };
  private readonly sinks = new Set<ObserverSink>();
  private counts = emptyRateCounts();
  private bucketStart: number;
  private bucketEnd: number;
  private lastExits: ExitCounts;
  private readonly lastIrq = new Map<string, number>();
  /** Pages the dirty log reported in the last few buckets: code run from one of them was freshly written. */
  private readonly recentDirty: Set<number>[] = [];
  private closed = false;
  /** Buckets since the last exact harvest, and the pages the last harvest found. */
  private sinceExact = 0;
  private lastDirty = 0;

  constructor(
    readonly vm: Vm,
    opts: { bucketMs?: number; recentBuckets?: number } = {},
  ) {
    this.bucketNs = (opts.bucketMs ?? DEFAULT_BUCKET_MS) * MS;
    this.recentCap = opts.recentBuckets ?? 10;
    const now = vm.clock.nowNs();
    this.bucketStart = now;
    this.bucketEnd = now + this.bucketNs;
    this.lastExits = vm.exitCounts();
    this.scanInterrupts(null, now);
    // A reader of its own: a migration or incremental restore reading the same log loses nothing.
    vm.vmMemory.startDirtyLog(this);
    vm.observers.push(this);
  }

  private readonly recentCap: number;

  addSink(s: ObserverSink): () => void {
    this.sinks.add(s);
    return () => this.sinks.delete(s);
  }

  get sinkCount(): number {
    return this.sinks.size;
  }

  /** Stops observing; the dirty log is stopped only if this observer started it and nobody else read it since. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    const i = this.vm.observers.indexOf(this);
    if (i >= 0) this.vm.observers.splice(i, 1);
    this.vm.vmMemory.stopDirtyLog(this);
    this.sinks.clear();
  }

  // ------------------------------------------------------------ VmObserver
  io(cpu: X86Cpu, port: number): void {
    if (!this.seen.ioPorts.has(port)) this.touch(cpu, 'ioPorts', port);
  }

  msr(cpu: X86Cpu, index: number): void {
    if (!this.seen.msrs.has(index)) this.touch(cpu, 'msrs', index);
  }

  hypercall(cpu: X86Cpu, fn: number): void {
    if (!this.seen.hypercalls.has(fn)) this.touch(cpu, 'hypercalls', fn);
  }

  codeFetch(cpu: X86Cpu, page: number): void {
    if (this.seen.codePages.has(page)) return;
    this.counts.newCodePages++;
    const written = this.recentDirty.some((s) => s.has(page)) || this.vm.vmMemory.ept.lookup(page)?.dirty === true;
    this.touch(cpu, 'codePages', page, written);
  }

  serialByte(port: SerialPort): void {
    if (port === 'com1') this.counts['serial.com1']++;
    else this.counts['serial.com2']++;
  }

  sliceEnd(cpu: X86Cpu): void {
    const now = this.vm.clock.nowNs();
    // The slice that stopped the VM closes its last bucket: nothing it did goes unseen.
    if (now >= this.bucketEnd || (this.vm.state === 'stopped' && now > this.bucketStart)) this.closeBucket(cpu, now);
  }

  // ------------------------------------------------------------ internals
  private touch(cpu: X86Cpu | null, set: SetMetric, value: number, written?: boolean): void {
    this.seen[set].add(value);
    if (this.sinks.size === 0) return;
    const t: FirstTouch = { set, value, atNs: this.vm.clock.nowNs(), rip: cpu ? cpu.readRip() : 0n, ...(written !== undefined ? { written } : {}) };
    for (const s of this.sinks) s.firstTouch(this.vm, t);
  }

  /** New interrupt vectors from the vCPUs' irq:0xNN counters (counted by the CPU layer). */
  private scanInterrupts(cpu: X86Cpu | null, _now: number): void {
    for (const v of this.vm.vcpus) {
      for (const k in v.cpu.counters) {
        if (!k.startsWith('irq:')) continue;
        const key = `${v.index}/${k}`;
        const n = v.cpu.counters[k]!;
        if (this.lastIrq.get(key) === n) continue;
        this.lastIrq.set(key, n);
        const vector = Number.parseInt(k.slice(4), 16);
        if (!this.seen.interruptVectors.has(vector)) this.touch(cpu, 'interruptVectors', vector);
      }
    }
  }

  private closeBucket(cpu: X86Cpu, now: number): void {
    const exits = this.vm.exitCounts();
    const c = this.counts;
    for (const r of EXIT_REASONS) c[`exits.${r}`] = exits[r] - this.lastExits[r];
    this.lastExits = exits;
    this.scanInterrupts(cpu, now);
    c.dirtyPages = this.harvest();
    const b: Bucket = { startNs: this.bucketStart, endNs: now, counts: c, rip: cpu.readRip() };
    this.counts = emptyRateCounts();
    this.bucketStart = now;
    // Bucket ends stay on the grid, so an idle stretch closes as one long bucket.
    this.bucketEnd = now + this.bucketNs - ((now - this.bucketEnd) % this.bucketNs);
    for (const s of this.sinks) s.bucket(this.vm, b);
  }

  /** Pages dirtied since the last bucket, from the VM's dirty log (as a reader of its own). */
  private harvest(): number {
    const mem = this.vm.vmMemory;
    if (!mem.isDirtyReader(this)) {
      // Restored in place or reloaded: the log was reset under us.
      mem.startDirtyLog(this);
      return 0;
    }
    const exact = ++this.sinceExact >= EXACT_EVERY || this.lastDirty >= BURST_PAGES;
    if (exact) this.sinceExact = 0;
    const pages = exact ? mem.harvestDirty(this) : mem.sampleDirty(this);
    this.lastDirty = pages.length;
    this.recentDirty.push(new Set(pages));
    if (this.recentDirty.length > this.recentCap) this.recentDirty.shift();
    return pages.length;
  }
}
