/**
 * The warm VM pool of the function service (docs/functions.md). One machine
 * and hypervisor hold every VM. Per shape (RAM, vCPUs, runtime image) the pool
 * boots the function runtime once to READY, keeps that VM's image as a shared
 * copy-on-write base, and keeps `warm` linked clones of it ready. An
 * invocation takes a warm VM (or a new clone while the host has room), writes
 * the function and body into its mailbox and lets it run; the VM comes back
 * to the pool when it answers. The pool refills in the background and shrinks
 * back to `warm` after `idleTimeoutMs`.
 */
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { createHash } from 'node:crypto';
import { SharedImage, type MemoryRange } from '../../hypervisor/memory/guest-memory.js';
import type { Hypervisor, VmImage } from '../../hypervisor/hypervisor.js';
import type { Vm, Vcpu } from '../../hypervisor/vm.js';
import { HC_ENOSYS } from '../../hypervisor/hypercalls.js';
import type { MachineExit, PcMachine } from '../../machine/platform/pc.js';
import type { StateRecord } from '../../machine/state.js';
import { guestHost } from '../run-guests.js';
import { PrivateWindow, type FnMemory } from './private-window.js';
import {
  describeFailure, FN_HYPERCALL, FN_IO_MAX, FN_KERNEL_ALIAS, FN_USER_PAGES_MAX, FN_USER_PHYS, FN_USER_VA, FN_MIN_RAM, FN_PRIVATE, FN_STATUS, readExternalRequest, readMailbox, readResponse, writeExternalAnswer, writeInvocation, type FnStatus,
} from './abi.js';

const MiB = 1024 * 1024;
/** Host RAM per VM beyond its private range: EPT tables, its control area, pages it copies on write. */
const VM_HEADROOM_BYTES = 1 * MiB;
/**
 * How long (wall time) an invocation may run before the host stops its VM: the guest's tick should
 * have stopped it at its limit in virtual time, which runs slower than wall time when VMs share a CPU.
 */
const watchdogMs = (limitMs: number): number => 20 * limitMs + 10_000;

export interface ShapeConfig {
  name: string;
  memMiB: number;
  vcpus: number;
  /** The function runtime guest (images/build/guests/function-runtime.elf). */
  image: string;
}

export interface PoolConfig {
  shapes: ShapeConfig[];
  /** Warm clones kept ready per shape. */
  warm: number;
  /** VMs the host has RAM for, over all shapes (busy, warm and resuming). */
  maxVms: number;
  idleTimeoutMs: number;
  pcpus?: number;
}

export class PoolExhausted extends Error {
  constructor(readonly shape: string, readonly retryAfterS: number) {
    super(`no VM of shape '${shape}' is free and no more fit in host RAM`);
    this.name = 'PoolExhausted';
  }
}

export interface Timings {
  /** Request arrival to the pool taking it (body read, function looked up). */
  queueMs: number;
  /** Choosing or creating the VM and writing the invocation into it. */
  assignMs: number;
  /** Invocation written to the runtime's USER_ENTER: the event-loop hop, the VM's slice, the runtime loading the function. */
  startMs: number;
  /** Request arrival to the runtime's USER_ENTER hypercall, made right before IRETQ into the function. */
  firstUserInstructionMs: number;
  /** USER_ENTER to RESPOND (parked time excluded from neither: see docs). */
  runMs: number;
  totalMs: number;
}

export interface InvocationResult {
  status: FnStatus | 'crashed';
  detail?: string;
  response: Uint8Array;
  timings: Timings;
  vm: string;
  shape: string;
}

export interface FunctionCode {
  name: string;
  /** Not changed after it is passed: a VM that holds the same array in its staging area is not written again. */
  elf: Uint8Array;
  limitMs: number;
}

/** A VM that called EXTERNAL, taken out of the pool: what a checkpoint stores. */
export interface ParkedVm {
  shape: string;
  baseKey: string;
  state: StateRecord;
  /** Private pages only: the private range and pages copied on write; the rest is the shape's base. */
  memory: MemoryRange[];
  request: { url: string; body: Uint8Array };
  function: string;
  limitMs: number;
}

interface Invocation {
  code: FunctionCode;
  seq: number;
  tArrival: number;
  tTaken: number;
  tAssigned: number;
  tUserEnter: number | null;
  tResponded: number | null;
  watchdog: NodeJS.Timeout | null;
  settle: (r: InvocationResult | ParkedVm) => void;
}

interface PoolVm {
  vm: Vm;
  shape: Shape;
  started: boolean;
  idleSince: number;
  /** The last sequence number written to its mailbox. */
  seq: number;
  current: Invocation | null;
  dead: boolean;
  /** Invocations it has served (a fresh clone has never run user code). */
  runs: number;
  /** Length of the last request body written into it (the next write zeroes what it leaves). */
  bodyLength: number;
  /** The host engine that holds no translated code of its function pages (null: unknown). */
  codeCleanOn: object | null;
  /** Its private range (mailbox, ELF, body, output), without an EPT walk per access. */
  mem: FnMemory;
  /** The ELF in its staging area (the runtime only reads it): the same function again is not rewritten. */
  stagedElf: Uint8Array | null;
}

interface Shape {
  config: ShapeConfig;
  image: VmImage;
  base: SharedImage;
  /** Identifies the base image: a checkpoint restores only onto the same one. */
  baseKey: string;
  warm: PoolVm[];
  busy: Set<PoolVm>;
  created: number;
}

export interface ShapeStatus {
  name: string;
  memMiB: number;
  vcpus: number;
  baseKey: string;
  warm: number;
  busy: number;
  target: number;
  clonesCreated: number;
}

export interface PoolStatus {
  shapes: ShapeStatus[];
  vms: number;
  maxVms: number;
  hostFramesUsed: number;
  hostFramesTotal: number;
}

/** The key of a base image: its state and memory bytes (two processes that loaded the same stored base agree). */
export function baseKeyOf(image: VmImage): string {
  const h = createHash('sha256');
  h.update(JSON.stringify(image.state, (_k, v: unknown) => (v instanceof Uint8Array ? Buffer.from(v).toString('base64') : typeof v === 'bigint' ? v.toString() : v)));
  for (const r of [...image.memory].sort((a, b) => a.gpa - b.gpa)) {
    h.update(`${r.gpa}:${r.bytes.length}:`);
    h.update(r.bytes);
  }
  return h.digest('hex').slice(0, 16);
}

export class FunctionPool {
  readonly shapes = new Map<string, Shape>();
  private readonly byVm = new Map<Vm, PoolVm>();
  private readonly running: Promise<MachineExit>;
  private shrinkTimer: NodeJS.Timeout | null = null;
  private refilling = false;
  private closed = false;
  private nextSeq = 1;
  /** Counters the metrics read. */
  readonly counters = { clonesCreated: 0, clonesDestroyed: 0, exhausted: 0, vmCrashes: 0 };

  private constructor(
    readonly config: PoolConfig,
    readonly machine: PcMachine,
    readonly hypervisor: Hypervisor,
  ) {
    machine.serving = true;
    machine.interactive = true;
    this.running = machine.run();
  }

  /**
   * Builds the machine and, per shape, the base image: `bases.load` (a stored
   * base, so that processes sharing a store agree), else by booting the runtime
   * to READY and handing the image to `bases.booted` (which stores it, or
   * returns the one another process stored first). Then fills the warm pool.
   */
  static async start(config: PoolConfig, bases: { load?: (s: ShapeConfig) => Promise<VmImage | null>; booted?: (s: ShapeConfig, image: VmImage) => Promise<VmImage> } = {}): Promise<FunctionPool> {
    if (config.shapes.length === 0) throw new RangeError('pool: no shapes configured');
    const names = new Set<string>();
    for (const s of config.shapes) {
      if (names.has(s.name)) throw new RangeError(`pool: shape '${s.name}' is configured twice`);
      names.add(s.name);
      if (!Number.isInteger(s.memMiB) || s.memMiB * MiB < FN_MIN_RAM || s.memMiB > 1024) throw new RangeError(`pool: shape '${s.name}': memMiB ${s.memMiB} must be 4..1024`);
      if (!Number.isInteger(s.vcpus) || s.vcpus !== 1) throw new RangeError(`pool: shape '${s.name}': vcpus ${s.vcpus}: the runtime serves on one vCPU`);
    }
    if (!Number.isInteger(config.maxVms) || config.maxVms < 1) throw new RangeError(`pool: maxVms ${config.maxVms} must be >= 1`);
    const baseBytes = config.shapes.reduce((n, s) => n + s.memMiB * MiB, 0);
    // The boot VM of each shape and its shared image coexist for a moment: room for both.
    const perVm = FN_PRIVATE.length + VM_HEADROOM_BYTES;
    const { machine, hypervisor } = guestHost(baseBytes, { pcpus: config.pcpus ?? 1, extraHostBytes: baseBytes + config.maxVms * perVm });
    const pool = new FunctionPool(config, machine, hypervisor);
    try {
      for (const s of config.shapes) {
        let image = (await bases.load?.(s)) ?? null;
        if (!image) {
          image = await pool.bootToReady(s);
          if (bases.booted) image = await bases.booted(s, image);
        }
        const base = SharedImage.create(hypervisor.host, `fn-${s.name}`, s.memMiB * MiB, image.memory);
        pool.shapes.set(s.name, { config: s, image, base, baseKey: baseKeyOf(image), warm: [], busy: new Set(), created: 0 });
      }
      pool.refill();
      const every = Math.max(250, Math.min(config.idleTimeoutMs / 2, 30_000));
      pool.shrinkTimer = setInterval(() => pool.shrink(), every);
      pool.shrinkTimer.unref();
    } catch (e) {
      await pool.close();
      throw e;
    }
    return pool;
  }

  /** Boots the runtime, waits for READY, and returns its image (the VM is then removed). */
  private async bootToReady(s: ShapeConfig): Promise<VmImage> {
    const vm = this.hypervisor.createGuest({ image: new Uint8Array(readFileSync(s.image)), fileName: basename(s.image), name: `fn-${s.name}-boot`, memBytes: s.memMiB * MiB, vcpus: s.vcpus });
    let ready = false;
    vm.onServiceCall = (v, vcpu, fn) => {
      if (fn !== FN_HYPERCALL.READY) return HC_ENOSYS;
      ready = true;
      this.freeze(v, vcpu);
      return 0n;
    };
    this.machine.kick();
    const deadline = performance.now() + 30_000;
    while (!ready && vm.state === 'running') {
      if (performance.now() > deadline) break;
      await new Promise((r) => setTimeout(r, 5));
    }
    try {
      if (!ready) throw new Error(`pool: shape '${s.name}': ${s.image} did not reach READY: ${vm.exit ? `${vm.exit.reason} code ${vm.exit.code} ${vm.exit.detail ?? ''}` : 'no READY hypercall within 30 s'}\n${vm.serial}`);
      const mb = readMailbox(vm.vmMemory);
      if (mb.ready !== 1) throw new Error(`pool: shape '${s.name}': the runtime announced ABI ${mb.ready}, the service speaks 1`);
      return this.hypervisor.snapshotVm(vm);
    } finally {
      this.hypervisor.removeVm(vm);
    }
  }

  private freeze(vm: Vm, vcpu: Vcpu): void {
    vm.frozen = true;
    vcpu.cpu.requestStop();
  }

  private deferred = 0;

  /**
   * Host work after a hypercall runs outside the slice (the engines are not
   * running then). The machine pauses after the round so that its loop yields
   * to the event loop now: a loop with a near timer otherwise blocks the
   * thread (Atomics.wait) or runs rounds for up to 15 ms before it yields.
   */
  private defer(fn: () => void): void {
    this.deferred++;
    this.machine.pauseAfterRound();
    setImmediate(() => {
      try {
        if (!this.closed) fn();
      } finally {
        if (--this.deferred === 0 && !this.closed) this.machine.resume();
      }
    });
  }

  private serviceCall = (vm: Vm, vcpu: Vcpu, fn: number, arg: bigint): bigint => {
    const pv = this.byVm.get(vm);
    if (!pv) return HC_ENOSYS;
    switch (fn) {
      case FN_HYPERCALL.READY:
        return 0n;
      case FN_HYPERCALL.WAIT:
        // The runtime saw `arg` in its mailbox; if the host has written a newer invocation since, it goes on at once.
        if (Number(arg) === pv.seq) this.freeze(vm, vcpu);
        return 0n;
      case FN_HYPERCALL.USER_ENTER:
        if (vcpu.cpu.hostEngine !== pv.codeCleanOn) this.dropStaleCode(pv, vcpu);
        pv.codeCleanOn = null;
        if (pv.current && pv.current.tUserEnter === null) pv.current.tUserEnter = performance.now();
        return 0n;
      case FN_HYPERCALL.RESPOND:
        if (pv.current && Number(arg) === pv.current.seq) {
          pv.current.tResponded = performance.now();
          this.dropFunctionCode(pv, vcpu);
          // Answered now, inside the hypercall: the runtime goes on to scrub the output and stack
          // before it waits, so the response is copied out here. The loop then yields once, so the
          // answer leaves before the next round.
          this.answered(pv);
          this.defer(() => undefined);
        }
        return 0n;
      case FN_HYPERCALL.EXTERNAL:
        if (!pv.current) return HC_ENOSYS;
        this.freeze(vm, vcpu);
        this.defer(() => this.park(pv));
        return 0n;
      default:
        return HC_ENOSYS;
    }
  };

  private get vmCount(): number {
    let n = 0;
    for (const s of this.shapes.values()) n += s.warm.length + s.busy.size;
    return n;
  }

  private window(vm: Vm): FnMemory {
    return new PrivateWindow(vm.vmMemory, this.hypervisor.host.memory, FN_PRIVATE);
  }

  /** A new linked clone of the shape's base, not scheduled yet. */
  private createClone(shape: Shape): PoolVm {
    const i = shape.created++;
    const vm = this.hypervisor.restoreVm(shape.image.state, { base: shape.base, privateRanges: [FN_PRIVATE] }, { name: `fn-${shape.config.name}-${i}`, start: false, keepCode: true });
    vm.cloneIndex = i;
    vm.onServiceCall = this.serviceCall;
    const pv: PoolVm = { vm, shape, started: false, idleSince: performance.now(), seq: 0, current: null, dead: false, runs: 0, bodyLength: 0, codeCleanOn: null, mem: this.window(vm), stagedElf: null };
    pv.seq = readMailbox(pv.mem).seq;
    this.byVm.set(vm, pv);
    this.counters.clonesCreated++;
    return pv;
  }

  private destroy(pv: PoolVm): void {
    pv.dead = true;
    this.byVm.delete(pv.vm);
    pv.shape.busy.delete(pv);
    const i = pv.shape.warm.indexOf(pv);
    if (i >= 0) pv.shape.warm.splice(i, 1);
    if (pv.started) this.hypervisor.removeVm(pv.vm);
    else pv.vm.close();
    this.counters.clonesDestroyed++;
  }

  /** Creates warm clones up to the target, one per event-loop turn, while the host has room. */
  refill(): void {
    if (this.refilling || this.closed) return;
    this.refilling = true;
    const step = (): void => {
      if (this.closed) return;
      const shape = [...this.shapes.values()].find((s) => s.warm.length < this.config.warm);
      if (!shape || this.vmCount >= this.config.maxVms) {
        this.refilling = false;
        return;
      }
      try {
        shape.warm.push(this.createClone(shape));
      } catch (e) {
        this.refilling = false;
        console.error(`pool: refill of shape '${shape.config.name}' failed: ${e instanceof Error ? e.message : String(e)}`);
        return;
      }
      setImmediate(step);
    };
    setImmediate(step);
  }

  /** Warm VMs beyond the target that have been idle longer than the idle timeout go away. */
  shrink(now = performance.now()): number {
    let removed = 0;
    for (const s of this.shapes.values()) {
      while (s.warm.length > this.config.warm) {
        const oldest = s.warm.reduce((a, b) => (a.idleSince <= b.idleSince ? a : b));
        if (now - oldest.idleSince < this.config.idleTimeoutMs) break;
        this.destroy(oldest);
        removed++;
      }
    }
    return removed;
  }

  private acquire(shape: Shape, elf: Uint8Array): PoolVm {
    // Every warm VM is clean (the runtime scrubs after answering). The most recently used one
    // that holds this function's ELF already, else the most recently used (its context is
    // likely still loaded in the engine), else a new clone while the host has room.
    let i = shape.warm.length - 1;
    while (i >= 0 && shape.warm[i]!.stagedElf !== elf) i--;
    const pv = (i >= 0 ? shape.warm.splice(i, 1)[0] : shape.warm.pop()) ?? (this.vmCount < this.config.maxVms ? this.createClone(shape) : null);
    if (!pv) {
      this.counters.exhausted++;
      throw new PoolExhausted(shape.config.name, 1);
    }
    shape.busy.add(pv);
    return pv;
  }

  private start(pv: PoolVm): void {
    if (!pv.started) {
      this.hypervisor.addVm(pv.vm);
      const onStop = pv.vm.onStop;
      pv.vm.onStop = (vm) => {
        onStop?.(vm);
        this.defer(() => this.vmStopped(pv));
      };
      pv.started = true;
    }
    pv.vm.frozen = false;
    this.machine.kick();
  }

  /** Runs a function on a VM of `shapeName`. Rejects with PoolExhausted when none is free and none fits. */
  invoke(shapeName: string, code: FunctionCode, body: Uint8Array, tArrival: number): Promise<InvocationResult | ParkedVm> {
    const shape = this.shapes.get(shapeName);
    if (!shape) return Promise.reject(new RangeError(`pool: no shape '${shapeName}'`));
    const tTaken = performance.now();
    const pv = this.acquire(shape, code.elf);
    return new Promise((resolve) => {
      const inv: Invocation = { code, seq: this.nextSeq++, tArrival, tTaken, tAssigned: 0, tUserEnter: null, tResponded: null, watchdog: null, settle: resolve };
      try {
        const elf = pv.stagedElf === code.elf ? null : code.elf;
        pv.stagedElf = null;
        writeInvocation(pv.mem, { seq: inv.seq, elf, elfLength: code.elf.length, body, limitMs: code.limitMs, previousBodyLength: pv.bodyLength });
        pv.stagedElf = code.elf;
        pv.bodyLength = body.length;
      } catch (e) {
        shape.busy.delete(pv);
        this.destroy(pv);
        throw e;
      }
      pv.seq = inv.seq;
      this.begin(pv, inv);
      this.refill();
    });
  }

  /**
   * The runtime has copied the function into its user pages. Needed only where
   * the VM's engine may still hold code of those pages: the pool drops it when
   * a function answers (dropFunctionCode), on that engine. Translated code
   * of those pages from an earlier function must go: the CPU layer does not
   * notice guest writes to pages that hold translated code (measured: a VM
   * that ran one function ran its stale code for the next). Called inside the
   * USER_ENTER hypercall, where the vCPU's page tables map the function, so
   * each page is dropped by its virtual address; pages are not contiguous in
   * host memory, hence one call per page.
   */
  private dropStaleCode(pv: PoolVm, vcpu: Vcpu): void {
    const pages = readMailbox(pv.mem).userPages;
    for (let i = 0; i < pages; i++) vcpu.cpu.engine.invalidateCode(FN_USER_VA + i * 4096, FN_USER_VA + (i + 1) * 4096);
  }

  /**
   * The function has answered: its pages' translated code goes now, through
   * the runtime's kernel alias of them, while nothing runs there. Otherwise the
   * runtime's next writes into those pages (clearing them, loading the next
   * function) would each make the CPU layer drop all translated code of the
   * engine (noteCodeWrite), and every invocation paid for that flush and for
   * translating the runtime again: 2-6 ms of the warm path, measured.
   */
  private dropFunctionCode(pv: PoolVm, vcpu: Vcpu): void {
    const pages = Math.min(readMailbox(pv.mem).userPages, FN_USER_PAGES_MAX);
    for (let i = 0; i < pages; i++) vcpu.cpu.dropCodePage(FN_KERNEL_ALIAS + FN_USER_PHYS + i * 4096);
    pv.codeCleanOn = vcpu.cpu.hostEngine;
  }

  private begin(pv: PoolVm, inv: Invocation): void {
    pv.current = inv;
    pv.runs++;
    inv.tAssigned = performance.now();
    inv.watchdog = setTimeout(() => {
      if (pv.current === inv && !pv.dead) pv.vm.stop({ reason: 'error', code: 2, detail: `function ${inv.code.name} ran ${watchdogMs(inv.code.limitMs)} ms of wall time without an answer; the host stopped the VM` });
    }, watchdogMs(inv.code.limitMs));
    inv.watchdog.unref();
    this.start(pv);
  }

  private timings(inv: Invocation, end: number): Timings {
    const r = (x: number) => Math.round(x * 1000) / 1000;
    const user = inv.tUserEnter ?? end;
    return { queueMs: r(inv.tTaken - inv.tArrival), assignMs: r(inv.tAssigned - inv.tTaken), startMs: r(Math.max(0, user - inv.tAssigned)), firstUserInstructionMs: r(user - inv.tArrival), runMs: r((inv.tResponded ?? end) - user), totalMs: r(end - inv.tArrival) };
  }

  private answered(pv: PoolVm): void {
    const inv = pv.current;
    if (!inv || pv.dead) return;
    if (inv.watchdog) clearTimeout(inv.watchdog);
    pv.current = null;
    const mb = readMailbox(pv.mem);
    const status: FnStatus = FN_STATUS[mb.status] ?? 'fault';
    const response = status === 'ok' ? readResponse(pv.mem, mb) : new Uint8Array(0);
    const result: InvocationResult = { status, response, timings: this.timings(inv, performance.now()), vm: pv.vm.name, shape: pv.shape.config.name };
    if (status !== 'ok') result.detail = describeFailure(status, mb, inv.code.limitMs);
    pv.shape.busy.delete(pv);
    pv.idleSince = performance.now();
    pv.shape.warm.push(pv);
    inv.settle(result);
  }

  private vmStopped(pv: PoolVm): void {
    if (pv.dead) return;
    const inv = pv.current;
    pv.current = null;
    const exit = pv.vm.exit;
    this.counters.vmCrashes++;
    this.destroy(pv);
    this.refill();
    if (inv) {
      if (inv.watchdog) clearTimeout(inv.watchdog);
      inv.settle({ status: 'crashed', detail: `the runtime VM stopped: ${exit ? `${exit.reason} code ${exit.code}${exit.detail ? `: ${exit.detail}` : ''}` : 'unknown'}`, response: new Uint8Array(0), timings: this.timings(inv, performance.now()), vm: pv.vm.name, shape: pv.shape.config.name });
    }
  }

  /** EXTERNAL: the VM's state and private pages leave the pool; the VM is freed. */
  private park(pv: PoolVm): void {
    const inv = pv.current;
    if (!inv || pv.dead) return;
    if (inv.watchdog) clearTimeout(inv.watchdog);
    const mem = pv.mem;
    const request = readExternalRequest(mem, readMailbox(mem));
    const state = pv.vm.saveState();
    const memory = privatePages(pv.vm, pv.shape.base);
    pv.current = null;
    this.destroy(pv);
    this.refill();
    inv.settle({ shape: pv.shape.config.name, baseKey: pv.shape.baseKey, state, memory, request, function: inv.code.name, limitMs: inv.code.limitMs });
  }

  /**
   * Continues a parked VM with the external service's answer, in a new VM of
   * its shape; resolves when the function answers (or parks again).
   */
  resume(parked: ParkedVm, answer: { status: number; body: Uint8Array }, tArrival: number): Promise<InvocationResult | ParkedVm> {
    const shape = this.shapes.get(parked.shape);
    if (!shape) return Promise.reject(new RangeError(`pool: the checkpoint needs shape '${parked.shape}', which this service does not have`));
    if (shape.baseKey !== parked.baseKey) return Promise.reject(new RangeError(`pool: the checkpoint was made on base ${parked.baseKey} of shape '${parked.shape}', this service runs base ${shape.baseKey}`));
    if (this.vmCount >= this.config.maxVms) {
      this.counters.exhausted++;
      return Promise.reject(new PoolExhausted(shape.config.name, 1));
    }
    const tTaken = performance.now();
    const i = shape.created++;
    const vm = this.hypervisor.restoreVm(parked.state, { base: shape.base, privateRanges: [FN_PRIVATE] }, { name: `fn-${shape.config.name}-${i}`, start: false, keepCode: true });
    vm.cloneIndex = i;
    vm.onServiceCall = this.serviceCall;
    try {
      for (const r of parked.memory) vm.vmMemory.write(r.gpa, r.bytes);
      writeExternalAnswer(vm.vmMemory, answer.status, answer.body);
    } catch (e) {
      vm.close();
      throw e;
    }
    // The parked request's body is still in the VM: the next invocation's write clears all of the area.
    const pv: PoolVm = { vm, shape, started: false, idleSince: performance.now(), seq: 0, current: null, dead: false, runs: 0, bodyLength: FN_IO_MAX, codeCleanOn: null, mem: this.window(vm), stagedElf: null };
    pv.seq = readMailbox(pv.mem).seq;
    this.byVm.set(vm, pv);
    shape.busy.add(pv);
    this.counters.clonesCreated++;
    return new Promise((resolve) => {
      const inv: Invocation = { code: { name: parked.function, elf: new Uint8Array(0), limitMs: parked.limitMs }, seq: pv.seq, tArrival, tTaken, tAssigned: 0, tUserEnter: tArrival, tResponded: null, watchdog: null, settle: resolve };
      this.begin(pv, inv);
    });
  }

  status(): PoolStatus {
    const alloc = this.hypervisor.host.allocator;
    return {
      shapes: [...this.shapes.values()].map((s) => ({ name: s.config.name, memMiB: s.config.memMiB, vcpus: s.config.vcpus, baseKey: s.baseKey, warm: s.warm.length, busy: s.busy.size, target: this.config.warm, clonesCreated: s.created })),
      vms: this.vmCount,
      maxVms: this.config.maxVms,
      hostFramesUsed: alloc.usedFrames,
      hostFramesTotal: alloc.totalFrames,
    };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.shrinkTimer) clearInterval(this.shrinkTimer);
    this.machine.stop('function service closed');
    await this.running.catch(() => undefined);
    for (const pv of [...this.byVm.values()]) {
      if (pv.current?.watchdog) clearTimeout(pv.current.watchdog);
    }
    this.hypervisor.close();
    for (const s of this.shapes.values()) s.base.release();
    this.machine.close();
  }
}

/** The pages a clone holds in frames of its own (its private range and what it copied on write), with their bytes. */
export function privatePages(vm: Vm, base: SharedImage): MemoryRange[] {
  const runs: { gpa: number; length: number }[] = [];
  for (const m of vm.vmMemory.ept.mappings(0, vm.vmMemory.ramBytes)) {
    for (let off = 0; off < m.size; off += 4096) {
      const gpa = m.gpa + off;
      if (base.frames.get(gpa) === m.hpa + off) continue;
      const last = runs[runs.length - 1];
      if (last && last.gpa + last.length === gpa) last.length += 4096;
      else runs.push({ gpa, length: 4096 });
    }
  }
  return runs.map((r) => ({ gpa: r.gpa, bytes: vm.vmMemory.read(r.gpa, r.length).slice() }));
}
