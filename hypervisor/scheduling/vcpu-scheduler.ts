/**
 * The hypervisor's vCPU scheduler: which vCPU runs on which pCPU (`--cpus`),
 * in the machine's virtual time, and how HLT/MWAIT idle periods are spent
 * (idle-controller.ts).
 *
 * Model. The machine runs one pCPU turn per scheduling step; virtual time
 * advances with the guest code a turn executes, with the virtual charges
 * below, and with a contended pCPU's native wait. A pCPU has an owner: the
 * vCPU running there, or a vCPU idling there natively. A runnable vCPU
 * without a pCPU waits.
 *  - Fair share: every vCPU accrues the pCPU time it holds (running,
 *    switching in, native waits while others want the pCPU). At a pCPU's turn
 *    a waiter with less accrued time than the owner takes the pCPU (CFS-like),
 *    so a spinning vCPU cannot starve another, in the same VM or not. A vCPU
 *    that wakes is placed half a quantum behind the least-served vCPU, so it
 *    gets a pCPU at the next turn (wake-up preemption) without being able to
 *    hoard one.
 *  - A switch (a pCPU starts a vCPU other than the one it last ran, or a vCPU
 *    comes back from an emulated idle) costs SWITCH_NS of virtual time before
 *    the vCPU's first instruction.
 *  - A native idle keeps the pCPU. While nobody waits that costs nothing; when
 *    someone waits, the pCPU's turn is spent waiting (virtual time passes)
 *    until the owner wakes, at most HOLD_SLOT_NS, unless the controller or the
 *    fair share gives the pCPU up.
 *  - A woken native owner runs at once on its own pCPU: the next turn is its.
 */
import type { X86Cpu } from '../../machine/cpu/x86-cpu.js';
import type { PcMachine } from '../../machine/platform/pc.js';
import type { Vcpu, Vm } from '../vm.js';
import { HOLD_SLOT_NS, IdleController, IdleHistory, SWITCH_NS, type IdleInstruction, type IdleMode, type IdlePolicy, type Decision } from './idle-controller.js';
import { IdleStats } from './idle-stats.js';
import { stateNumber, stateString, StateError, type StateRecord } from '../../machine/state.js';

/** How far behind the least-served vCPU a waking vCPU is placed (CFS's sleeper credit). */
const WAKE_CREDIT_NS = HOLD_SLOT_NS / 2;

interface Idle {
  kind: IdleInstruction;
  mode: IdleMode;
  /** Start of the idle period (for the history) and of its current mode (for time per state). */
  sinceNs: number;
  modeSinceNs: number;
}

/** The scheduler's view of one vCPU; kept per Vcpu across VM list changes. */
class Entity {
  pcpu = -1;
  /** pCPU time accrued (fair share). */
  vruntime = 0;
  idle: Idle | null = null;
  /** Woken at this virtual time and not yet run since (wake latency runs until its first instruction). */
  wokeAtNs: number | null = null;
  wokeFrom: IdleMode = 'native';
  /** Must pay a switch before its next instruction. */
  switchPending = false;
  sliceStartNs = 0;
  readonly history = new IdleHistory();
  readonly stats = new IdleStats();

  constructor(
    readonly vcpu: Vcpu,
    readonly order: number,
  ) {}
}

export class VcpuScheduler {
  readonly controller: IdleController;
  private readonly entities = new WeakMap<Vcpu, Entity>();
  private list: Entity[] = [];
  private byCpu = new Map<X86Cpu, Entity>();
  private owners: (Entity | null)[];
  /** The vCPU each pCPU ran last (a different one next costs a switch). */
  private lastRan: (Entity | null)[];
  private turn = 0;
  private order = 0;
  private readonly picked: X86Cpu[] = [];
  private readonly waiters: Entity[] = [];

  constructor(
    private readonly machine: PcMachine,
    policy: IdlePolicy = 'adaptive',
  ) {
    this.controller = new IdleController(policy);
    this.owners = new Array<Entity | null>(machine.cpus.length).fill(null);
    this.lastRan = new Array<Entity | null>(machine.cpus.length).fill(null);
  }

  get policy(): IdlePolicy {
    return this.controller.policy;
  }

  /** Scheduling turns taken so far: a live update carries it over, so the interleaving goes on unchanged. */
  get turnCount(): number {
    return this.turn;
  }

  set turnCount(n: number) {
    this.turn = n;
  }

  /** The VM list changed: new vCPUs start at the least-served one's share; gone ones release their pCPUs. */
  sync(vms: readonly Vm[]): void {
    const minV = this.list.length ? Math.min(...this.list.map((e) => e.vruntime)) : 0;
    const list: Entity[] = [];
    for (const vm of vms) {
      for (const v of vm.vcpus) {
        let e = this.entities.get(v);
        if (!e) {
          e = new Entity(v, this.order++);
          e.vruntime = minV;
          this.entities.set(v, e);
        }
        list.push(e);
      }
    }
    this.list = list;
    this.byCpu = new Map(list.map((e) => [e.vcpu.cpu, e]));
    const live = new Set(list);
    this.owners = this.owners.map((o) => (o && live.has(o) ? o : null));
    this.lastRan = this.lastRan.map((o) => (o && live.has(o) ? o : null));
  }

  stats(v: Vcpu): IdleStats | undefined {
    return this.entities.get(v)?.stats;
  }

  private now(): number {
    return this.machine.timeline.nowNs();
  }

  private eligible(e: Entity): boolean {
    const vm = e.vcpu.vm;
    return vm.state === 'running' && !vm.frozen;
  }

  /** Notes idle entries and wake-ups since the last look; releases pCPUs of vCPUs that cannot use them. */
  private waitingCount(): number {
    let waiting = 0;
    for (const e of this.list) if (e.pcpu < 0 && e.vcpu.cpu.state === 'running' && e.idle === null && this.eligible(e)) waiting++;
    return waiting;
  }

  private observe(now: number): void {
    const waiting = this.waitingCount();
    for (const e of this.list) {
      const st = e.vcpu.cpu.state;
      if (!this.eligible(e) || st === 'wait-for-sipi' || st === 'shutdown') {
        this.release(e);
        continue;
      }
      if (e.idle && st === 'running') this.woke(e, now);
      else if (!e.idle && (st === 'halted' || st === 'mwait')) this.enterIdle(e, st === 'mwait' ? 'mwait' : 'hlt', now, waiting);
    }
  }

  private enterIdle(e: Entity, kind: IdleInstruction, now: number, waiting: number): void {
    const d = this.controller.onEntry(e.history, kind, waiting);
    e.idle = { kind, mode: d.mode, sinceNs: now, modeSinceNs: now };
    e.wokeAtNs = null;
    e.stats.instructions[kind]++;
    e.stats.entries[d.mode]++;
    this.noteDecision(e, d, now);
    if (d.mode === 'emulated') this.release(e);
    else if (d.pollNs !== undefined) {
      // haltpoll: the poll window ends; if the vCPU still sleeps, it gives the pCPU up.
      const idle = e.idle;
      this.machine.timeline.schedule(now + d.pollNs, () => {
        if (e.idle !== idle || idle.mode !== 'native' || e.pcpu < 0) return;
        e.stats.decisions.released++;
        this.noteDecision(e, { mode: 'emulated', reason: 'haltpoll: poll window over', predictedNs: d.predictedNs }, this.now());
        this.convertToEmulated(e);
      });
    }
  }

  private noteDecision(e: Entity, d: Decision, now: number): void {
    e.stats.decisions[d.mode]++;
    e.stats.lastDecision = { atNs: now, mode: d.mode, reason: d.reason, predictedNs: d.predictedNs };
  }

  private woke(e: Entity, now: number): void {
    const idle = e.idle!;
    e.stats.timeNs[idle.mode] += now - idle.modeSinceNs;
    e.history.noteIdle(idle.kind, now - idle.sinceNs);
    if (this.controller.policy === 'haltpoll') e.history.notePollOutcome(now - idle.sinceNs);
    e.idle = null;
    e.wokeAtNs = now;
    e.wokeFrom = e.pcpu >= 0 ? 'native' : 'emulated';
    if (e.pcpu < 0) {
      // Back from giving the pCPU up: placed just behind the least-served runnable vCPU, and a switch in.
      e.switchPending = true;
      let minV = Infinity;
      for (const o of this.list) if (o !== e && (o.pcpu >= 0 || (o.vcpu.cpu.state === 'running' && o.idle === null))) minV = Math.min(minV, o.vruntime);
      if (minV !== Infinity) e.vruntime = Math.max(e.vruntime, minV - WAKE_CREDIT_NS);
    }
  }

  private release(e: Entity): void {
    if (e.pcpu < 0) return;
    if (this.owners[e.pcpu] === e) this.owners[e.pcpu] = null;
    e.pcpu = -1;
    e.switchPending = true;
  }

  /**
   * The scheduling state of one VM's vCPUs, between slices: fair shares
   * (relative to the VM's least-served vCPU), idle periods, pending wake-ups
   * and switches, pCPU ownership and the idle history. A VM restored from it
   * onto a machine with the same pCPUs is scheduled exactly as it would have been.
   */
  saveVm(vm: Vm): StateRecord {
    const es = vm.vcpus.map((v) => this.entities.get(v)!);
    const now = this.now();
    const minV = Math.min(...es.map((e) => e.vruntime));
    return {
      version: 1,
      turn: this.turn,
      vcpus: es.map((e) => ({
        vruntime: e.vruntime - minV,
        pcpu: e.pcpu,
        lastRanOn: this.lastRan.flatMap((o, p) => (o === e ? [p] : [])),
        idleKind: e.idle?.kind ?? '',
        idleMode: e.idle?.mode ?? '',
        idleAgoNs: e.idle ? now - e.idle.sinceNs : 0,
        modeAgoNs: e.idle ? now - e.idle.modeSinceNs : 0,
        wokeAgoNs: e.wokeAtNs === null ? -1 : now - e.wokeAtNs,
        wokeFrom: e.wokeFrom,
        switchPending: e.switchPending ? 1 : 0,
        history: e.history.save(),
      })),
    };
  }

  /** Applies saveVm()'s record to a VM just added (checked whole before anything changes). */
  restoreVm(vm: Vm, rec: StateRecord): void {
    const who = `vm ${vm.name}.scheduling`;
    if (stateNumber(rec, 'version', who) !== 1) throw new StateError(who, 'version', `unknown version ${String(rec['version'])}`);
    const list = rec['vcpus'];
    if (!Array.isArray(list) || list.length !== vm.vcpus.length) throw new StateError(who, 'vcpus', `expected ${vm.vcpus.length} vCPU records`);
    const P = this.owners.length;
    const parsed = list.map((r, i) => {
      const w = `${who}.vcpus[${i}]`;
      if (r === null || typeof r !== 'object' || Array.isArray(r) || r instanceof Uint8Array) throw new StateError(who, `vcpus[${i}]`, 'not a record');
      const kind = stateString(r, 'idleKind', w);
      const mode = stateString(r, 'idleMode', w);
      if (kind !== '' && kind !== 'hlt' && kind !== 'mwait') throw new StateError(w, 'idleKind', `'${kind}' is not hlt or mwait`);
      if (mode !== '' && mode !== 'native' && mode !== 'emulated') throw new StateError(w, 'idleMode', `'${mode}' is not native or emulated`);
      const wokeFrom = stateString(r, 'wokeFrom', w);
      if (wokeFrom !== 'native' && wokeFrom !== 'emulated') throw new StateError(w, 'wokeFrom', `'${wokeFrom}' is not native or emulated`);
      const lastRanOn = r['lastRanOn'];
      if (!Array.isArray(lastRanOn) || !lastRanOn.every((p) => typeof p === 'number')) throw new StateError(w, 'lastRanOn', 'expected pCPU numbers');
      const history = r['history'];
      if (history === null || typeof history !== 'object' || Array.isArray(history) || history instanceof Uint8Array) throw new StateError(w, 'history', 'not a record');
      return {
        vruntime: stateNumber(r, 'vruntime', w),
        pcpu: stateNumber(r, 'pcpu', w),
        lastRanOn: lastRanOn as number[],
        idle: kind === '' ? null : { kind: kind as IdleInstruction, mode: (mode || 'native') as IdleMode, ago: stateNumber(r, 'idleAgoNs', w), modeAgo: stateNumber(r, 'modeAgoNs', w) },
        wokeAgo: stateNumber(r, 'wokeAgoNs', w),
        wokeFrom: wokeFrom as IdleMode,
        switchPending: stateNumber(r, 'switchPending', w) !== 0,
        history: IdleHistory.parse(history, `${w}.history`),
      };
    });
    const turn = stateNumber(rec, 'turn', who);
    const now = this.now();
    const others = this.list.filter((e) => e.vcpu.vm !== vm);
    const base = others.length ? Math.min(...others.map((e) => e.vruntime)) : 0;
    vm.vcpus.forEach((v, i) => {
      const e = this.entities.get(v)!;
      const r = parsed[i]!;
      this.release(e);
      e.vruntime = base + r.vruntime;
      e.idle = r.idle ? { kind: r.idle.kind, mode: r.idle.mode, sinceNs: now - r.idle.ago, modeSinceNs: now - r.idle.modeAgo } : null;
      e.wokeAtNs = r.wokeAgo < 0 ? null : now - r.wokeAgo;
      e.wokeFrom = r.wokeFrom;
      if (r.pcpu >= 0 && r.pcpu < P && this.owners[r.pcpu] === null) {
        this.owners[r.pcpu] = e;
        e.pcpu = r.pcpu;
      }
      for (const p of r.lastRanOn) if (p >= 0 && p < P && this.lastRan[p] === null) this.lastRan[p] = e;
      e.switchPending = r.switchPending;
      e.history.load(r.history);
    });
    if (others.length === 0 && Number.isInteger(turn) && turn >= 0 && turn < P) this.turn = turn;
  }

  private assign(e: Entity, p: number): void {
    const old = this.owners[p];
    if (old && old !== e) this.release(old);
    this.release(e);
    this.owners[p] = e;
    e.pcpu = p;
    // A pCPU's very first context (machine start, or a VM restored onto a fresh machine) is no switch.
    e.switchPending = (this.lastRan[p] !== null && this.lastRan[p] !== e) || e.switchPending;
  }

  /** Runnable vCPUs without a pCPU, least served first (ties: creation order). */
  private collectWaiters(): Entity[] {
    const w = this.waiters;
    w.length = 0;
    for (const e of this.list) if (e.pcpu < 0 && e.idle === null && e.vcpu.cpu.state === 'running' && this.eligible(e)) w.push(e);
    w.sort((a, b) => a.vruntime - b.vruntime || a.order - b.order);
    return w;
  }

  /** The vCPU for the next pCPU turn (at most one), or none when every pCPU would only wait. */
  runnable(): readonly X86Cpu[] {
    const picked = this.picked;
    picked.length = 0;
    const now = this.now();
    this.observe(now);
    const P = this.owners.length;
    // A native owner that woke runs now on the pCPU that waited for it.
    for (let p = 0; p < P; p++) {
      const o = this.owners[p];
      if (o && o.idle === null && o.wokeAtNs !== null && o.vcpu.cpu.state === 'running') {
        picked.push(o.vcpu.cpu);
        this.turn = (p + 1) % P;
        return picked;
      }
    }
    const waiters = this.collectWaiters();
    for (let k = 0; k < P; k++) {
      const p = (this.turn + k) % P;
      const o = this.owners[p];
      const w = waiters[0];
      if (o && o.idle === null) {
        if (w && w.vruntime < o.vruntime) {
          this.assign(w, p);
          waiters.shift();
          picked.push(w.vcpu.cpu);
        } else picked.push(o.vcpu.cpu);
      } else if (o && o.idle) {
        if (!w) continue; // a native wait nobody else wants the pCPU for costs nothing
        const d = this.controller.reconsider(o.history, o.idle.kind, now - o.idle.sinceNs, waiters.length);
        if (d) {
          o.stats.decisions.released++;
          this.noteDecision(o, d, now);
          this.convertToEmulated(o);
        } else if (w.vruntime < o.vruntime) {
          o.stats.decisions.preempted++;
          this.convertToEmulated(o);
        }
        if (this.owners[p] === null) {
          this.assign(w, p);
          waiters.shift();
          picked.push(w.vcpu.cpu);
        } else picked.push(o.vcpu.cpu); // the pCPU waits for its owner (beginSlice)
      } else if (w) {
        this.assign(w, p);
        waiters.shift();
        picked.push(w.vcpu.cpu);
      } else continue;
      this.turn = (p + 1) % P;
      return picked;
    }
    return picked;
  }

  private convertToEmulated(o: Entity): void {
    const idle = o.idle!;
    const now = this.now();
    o.stats.timeNs.native += now - idle.modeSinceNs;
    this.release(o);
    o.idle = { kind: idle.kind, mode: 'emulated', sinceNs: idle.sinceNs, modeSinceNs: now };
  }

  pcpuFor(cpu: X86Cpu): number {
    const e = this.byCpu.get(cpu);
    return e && e.pcpu >= 0 ? e.pcpu : 0;
  }

  /**
   * Before a turn's slice: a contended native wait passes virtual time until
   * the owner wakes (or the hold slot ends); a switch is charged; a wake-up's
   * latency ends here. Returns true when virtual time was used.
   */
  beginSlice(cpu: X86Cpu): boolean {
    const e = this.byCpu.get(cpu);
    if (!e) return false;
    const tl = this.machine.timeline;
    let used = false;
    if (e.idle && e.pcpu >= 0) {
      const start = tl.nowNs();
      const end = start + HOLD_SLOT_NS;
      while (cpu.state !== 'running' && !this.machine.exit && this.eligible(e)) {
        const next = Math.min(tl.nextDeadline(), end);
        const progressed = next > tl.nowNs();
        if (progressed) tl.advanceTo(next);
        cpu.serviceInterrupts();
        if (!progressed || tl.nowNs() >= end) break;
      }
      const held = tl.nowNs() - start;
      e.vruntime += held;
      e.stats.pcpuNs += held;
      used = held > 0;
      if (cpu.state === 'running' && e.idle) this.woke(e, tl.nowNs());
      if (cpu.state !== 'running') return used;
    }
    if (cpu.state !== 'running') return used;
    if (e.switchPending) {
      e.switchPending = false;
      e.stats.switches++;
      tl.advanceTo(tl.nowNs() + SWITCH_NS);
      e.vruntime += SWITCH_NS;
      e.stats.pcpuNs += SWITCH_NS;
      used = true;
    }
    const now = tl.nowNs();
    if (e.wokeAtNs !== null) {
      const lat = now - e.wokeAtNs;
      e.stats.recordLatency(lat);
      if (e.wokeFrom === 'emulated') e.history.noteEmulatedLatency(lat);
      e.wokeAtNs = null;
    }
    if (e.pcpu >= 0) this.lastRan[e.pcpu] = e;
    e.sliceStartNs = now;
    return used;
  }

  /** After a slice: the vCPU's share grows by the virtual time it ran. */
  sliceEnded(cpu: X86Cpu): void {
    const e = this.byCpu.get(cpu);
    if (!e) return;
    const ran = Math.max(0, this.now() - e.sliceStartNs);
    e.vruntime += ran;
    e.stats.pcpuNs += ran;
    e.stats.runNs += ran;
    e.sliceStartNs = this.now();
    // The idle period starts now: an interrupt already pending (STI; HLT with a request waiting)
    // wakes the vCPU before the next scheduling step, and that zero-length idle still counts.
    const st = cpu.state;
    if (!e.idle && (st === 'halted' || st === 'mwait') && this.eligible(e)) this.enterIdle(e, st === 'mwait' ? 'mwait' : 'hlt', this.now(), this.waitingCount());
  }
}
