/**
 * The TypeScript micro-hypervisor. It takes the machine over from the handoff
 * (a memory map with fenced ranges), allocates host frames for guest RAM and
 * EPT tables, builds VMs from Multiboot images, and schedules their vCPUs
 * onto the machine's logical CPUs in time slices.
 */
import { basename } from 'node:path';
import type { CpuScheduler, PcMachine } from '../machine/platform/pc.js';
import type { SliceExit, X86Cpu } from '../machine/cpu/x86-cpu.js';
import { Vm, type Vcpu, type VmExit } from './vm.js';
import type { HostMemoryManager } from './host-memory.js';
import { GuestMemory, type GpaRange, type GuestMemoryOptions, type MemoryRange, type PageSource, type SharedImage } from './memory/guest-memory.js';
import { checkVersion, stateNumber, stateString, StateError, type StateRecord } from '../machine/state.js';

/** A VM's state record plus its guest memory: what a VM snapshot holds. */
export interface VmImage {
  state: StateRecord;
  memory: MemoryRange[];
}

/** Where a restored VM's memory comes from. */
export type VmMemorySource = { ranges: readonly MemoryRange[]; populate?: 'eager' | 'lazy' } | { base: SharedImage; privateRanges?: readonly GpaRange[] };

/** Page lookup over snapshot ranges, for lazy population (pages not covered are zero). Built in O(ranges): VM creation must stay cheap. */
function pageSource(ranges: readonly MemoryRange[]): PageSource {
  const sorted = [...ranges].sort((a, b) => a.gpa - b.gpa);
  return (page) => {
    let lo = 0;
    let hi = sorted.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const r = sorted[mid]!;
      if (page < r.gpa) hi = mid - 1;
      else if (page >= r.gpa + r.bytes.length) lo = mid + 1;
      else return r.bytes.subarray(page - r.gpa, page - r.gpa + 4096);
    }
    return null;
  };
}
import { MsrExitFrames } from './msr-exits.js';
import { parseMultibootImage, buildMultibootInfo, qemuPcMemoryMap, MULTIBOOT_BOOTLOADER_MAGIC } from './multiboot/index.js';
import { chooseMbiRegion } from './multiboot/mbi-placement.js';
import { linuxBootPlan, type BootFile, type LinuxBootPlan } from './linux/index.js';
import { placeMultibootModules } from './linux/multiboot-modules.js';
import { REG } from '../machine/cpu/unicorn/constants.js';
import { seabiosDeviceState } from './legacy-state.js';
import { firmwareTables } from './acpi/index.js';
import { dropWrite } from './dropped-writes.js';
import { OpenBusExhausted } from './open-bus.js';
import { FrameAllocatorError } from './memory/frame-allocator.js';
import { VcpuScheduler } from './scheduling/vcpu-scheduler.js';
import type { IdlePolicy } from './scheduling/idle-controller.js';
import type { IdleStats, IdleStatsReport } from './scheduling/idle-stats.js';

export interface GuestSpec {
  image: Uint8Array;
  fileName: string;
  name?: string;
  memBytes: number;
  vcpus: number;
  cmdline?: string;
  /** --initrd: the bzImage's initrd, PVH module 0, or a Multiboot module (as QEMU's -initrd). */
  initrd?: BootFile;
  /** --module FILE[,cmdline]: Multiboot or PVH modules after the initrd. */
  modules?: readonly BootFile[];
}

export interface HandoffMemoryRange {
  base: number;
  length: number;
  type: number;
}

export interface GuestReport {
  name: string;
  exit: VmExit | null;
  serial: string;
  exits: Record<string, number>;
  vcpus: { index: number; state: string; hostMs: number; lastPcpu: number; idle?: IdleStatsReport }[];
}

export class Hypervisor implements CpuScheduler {
  readonly name = 'hypervisor';
  readonly vms: Vm[] = [];
  readonly host: HostMemoryManager;
  readonly msrFrames: MsrExitFrames;
  private nextVmId = 1;
  /** Fair-share vCPU scheduling and HLT/MWAIT idling (hypervisor/scheduling/). */
  private sched: VcpuScheduler;
  onAllStopped: (() => void) | undefined;

  constructor(
    readonly machine: PcMachine,
    handoffMap: readonly HandoffMemoryRange[],
    host: HostMemoryManager,
  ) {
    this.host = host;
    this.msrFrames = new MsrExitFrames(host);
    // From now on the machine's CPUs run our vCPUs; the machine's own CPUs stay parked.
    machine.scheduler = this;
    this.sched = new VcpuScheduler(machine);
    machine.log('hypervisor', `took over: ${handoffMap.filter((r) => r.type === 1).length} usable ranges, ${handoffMap.filter((r) => r.type === 5).length} fenced`);
  }

  /** Builds a VM from a Multiboot image, as qemu -kernel does. Errors name the file and field. */
  createGuest(spec: GuestSpec): Vm {
    // A Linux bzImage or PVH vmlinux boots through its own protocol (hypervisor/linux/).
    const linux = linuxBootPlan(spec, qemuPcMemoryMap(spec.memBytes));
    if (linux) return this.createLinuxGuest(spec, linux);
    const plan = parseMultibootImage(spec.image, spec.fileName, { ramSize: spec.memBytes });
    const mods = placeMultibootModules(plan.segments, [...(spec.initrd ? [spec.initrd] : []), ...(spec.modules ?? [])], spec.memBytes);
    const vm = this.newVm({ name: spec.name ?? basename(spec.fileName).replace(/\.elf$/, ''), vcpus: spec.vcpus, memBytes: spec.memBytes });
    const memory = vm.vmMemory;
    // What SeaBIOS leaves in RAM (BDA, ACPI) first: a kernel loaded over it keeps its own bytes.
    for (const w of firmwareTables(spec.vcpus, spec.memBytes)) memory.write(w.gpa, w.bytes);
    for (const seg of plan.segments) {
      const bytes = new Uint8Array(seg.memSize);
      bytes.set(seg.fileBytes.subarray(0, Math.min(seg.fileBytes.length, seg.memSize)));
      memory.write(seg.paddr, bytes);
    }
    for (const w of mods.writes) memory.write(w.gpa, w.bytes);
    // QEMU always passes "<kernel> <append>", with the space even when -append is empty.
    const cmdline = `${spec.fileName} ${spec.cmdline ?? ''}`;
    // The MBI never lands on the kernel's own bytes (mbi-placement.ts).
    const mbi = buildMultibootInfo({ memoryMap: qemuPcMemoryMap(spec.memBytes), cmdline, bootLoaderName: 'qemu', modules: mods.modules, placeAt: chooseMbiRegion([...plan.segments, ...mods.asSegments], spec.memBytes, spec.fileName) });
    memory.write(mbi.base, mbi.bytes);
    seabiosDeviceState(vm.io);
    vm.vcpus[0]!.cpu.enterFlatProtectedMode(plan.entry, MULTIBOOT_BOOTLOADER_MAGIC, mbi.address);
    this.addVm(vm);
    this.machine.log('hypervisor', `${vm.name}: ${spec.memBytes >> 20} MiB, ${spec.vcpus} vCPU, entry 0x${plan.entry.toString(16)}`);
    return vm;
  }

  /** A Linux kernel (bzImage or PVH) as the plan from hypervisor/linux/ says: its bytes, then its 32-bit entry. */
  private createLinuxGuest(spec: GuestSpec, plan: LinuxBootPlan): Vm {
    const vm = this.newVm({ name: spec.name ?? basename(spec.fileName), vcpus: spec.vcpus, memBytes: spec.memBytes });
    for (const w of [...firmwareTables(spec.vcpus, spec.memBytes), ...plan.writes]) vm.vmMemory.write(w.gpa, w.bytes);
    seabiosDeviceState(vm.io);
    const cpu = vm.vcpus[0]!.cpu;
    cpu.enterFlatProtectedMode(plan.entry, 0, plan.ebx);
    cpu.engine.writeReg(REG.RSI, plan.esi);
    this.addVm(vm);
    this.machine.log('hypervisor', `${vm.name}: ${spec.memBytes >> 20} MiB, ${spec.vcpus} vCPU, ${plan.summary}`);
    return vm;
  }

  /**
   * An empty VM: guest memory (populated as `memory` says), board, vCPUs at
   * reset. Not scheduled until addVm(). Creation and snapshot restore both build here.
   */
  newVm(opts: { name: string; vcpus: number; memBytes: number; clockNs?: number; memory?: GuestMemoryOptions }): Vm {
    const id = this.nextVmId++;
    const memory = new GuestMemory(this.host, `vm${id}`, opts.memBytes, opts.memory ?? {});
    memory.shootdown = () => this.shootdown();
    memory.engineRunning = () => this.machine.hostCpus.some((h) => h.running);
    try {
      return new Vm(this.machine, memory, { id, name: opts.name, vcpus: opts.vcpus, memory, msrFrames: this.msrFrames, ...(opts.clockNs !== undefined ? { clockNs: opts.clockNs } : {}) });
    } catch (e) {
      memory.destroy();
      throw e;
    }
  }

  /** The scheduler's turn count ('rr' in live-update records) and the next VM id: live update carries them over (VM owners and interleaving stay the same). */
  get counters(): { rr: number; nextVmId: number } {
    return { rr: this.sched.turnCount, nextVmId: this.nextVmId };
  }

  set counters(c: { rr: number; nextVmId: number }) {
    this.sched.turnCount = c.rr;
    this.nextVmId = c.nextVmId;
  }

  /** A VM's scheduling record (shares, idle state), as snapshotVm saves it. */
  schedulingRecord(vm: Vm): StateRecord {
    return this.sched.saveVm(vm);
  }

  /** Starts scheduling a VM built by newVm(). */
  addVm(vm: Vm): void {
    vm.onStop = () => this.vmStopped();
    this.vms.push(vm);
    this.allCache = null;
    this.vcpuByCpu.clear();
    this.sched.sync(this.vms);
  }

  /** Takes a VM off the machine and frees everything it holds (after migration, or a clone's end). */
  removeVm(vm: Vm): void {
    const i = this.vms.indexOf(vm);
    if (i < 0) return;
    this.vms.splice(i, 1);
    this.allCache = null;
    this.vcpuByCpu.clear();
    this.sched.sync(this.vms);
    vm.close();
    if (this.vms.length > 0 && this.vms.every((v) => v.state === 'stopped')) this.onAllStopped?.();
  }

  /** Every host engine drops its TLB (and its virtual-PC code cache): mappings lost permissions. */
  shootdown(): void {
    for (const h of this.machine.hostCpus) if (!h.engine.isClosed) h.engine.flushTlb();
  }

  private vmStopped(): void {
    this.allCache = null;
    if (this.vms.every((v) => v.state === 'stopped')) this.onAllStopped?.();
  }

  private get pcpus(): number {
    return this.machine.cpus.length;
  }

  // ------------------------------------------------------------ CpuScheduler
  private allCache: X86Cpu[] | null = null;

  all(): readonly X86Cpu[] {
    this.allCache ??= this.vms.filter((v) => v.state === 'running').flatMap((v) => v.vcpus.map((c) => c.cpu));
    return this.allCache;
  }

  /** How HLT/MWAIT idle periods run: native, emulated or adaptive (--idle-policy). Set before the first step. */
  get idlePolicy(): IdlePolicy {
    return this.sched.policy;
  }

  set idlePolicy(policy: IdlePolicy) {
    if (policy === this.sched.policy) return;
    this.sched = new VcpuScheduler(this.machine, policy);
    this.sched.sync(this.vms);
  }

  /** One pCPU turn at a time, fair in virtual time (hypervisor/scheduling/vcpu-scheduler.ts). */
  runnable(): readonly X86Cpu[] {
    const picked = this.sched.runnable();
    for (const cpu of picked) {
      const v = this.vcpuOf(cpu);
      if (v) v.lastPcpu = this.sched.pcpuFor(cpu);
    }
    return picked;
  }

  pcpuFor(cpu: X86Cpu): number {
    return this.sched.pcpuFor(cpu);
  }

  beginSlice(cpu: X86Cpu): boolean {
    return this.sched.beginSlice(cpu);
  }

  /** A vCPU's idling counters (run --json, the monitor, the TUI). */
  idleStats(v: Vcpu): IdleStatsReport | undefined {
    return this.sched.stats(v)?.report(this.sched.policy);
  }

  /** The live counters behind idleStats (benches pool the wake-latency samples). */
  idleStatsOf(v: Vcpu): IdleStats | undefined {
    return this.sched.stats(v);
  }

  private readonly vcpuByCpu = new Map<X86Cpu, Vcpu>();

  /** A VM a debugger holds stopped (its vCPUs stay in all(): the machine is not idle-dead while it waits). */
  frozen(cpu: X86Cpu): boolean {
    return this.vcpuOf(cpu)?.vm.frozen === true;
  }

  private vcpuOf(cpu: X86Cpu): Vcpu | undefined {
    if (this.vcpuByCpu.size === 0) for (const vm of this.vms) for (const v of vm.vcpus) this.vcpuByCpu.set(v.cpu, v);
    return this.vcpuByCpu.get(cpu);
  }

  onSliceExit(cpu: X86Cpu, exit: SliceExit, hostMs: number): void {
    const v = this.vcpuOf(cpu);
    if (!v) return;
    v.hostMs += hostMs;
    v.slices++;
    this.sched.sliceEnded(cpu);
    const vm = v.vm;
    switch (exit.kind) {
      case 'triple-fault':
        vm.stop({ reason: 'triple-fault', code: 0, detail: `vCPU ${v.index}: ${exit.reason}` });
        break;
      case 'error':
        vm.stop({ reason: 'error', code: 2, detail: `vCPU ${v.index}: ${exit.message}` });
        break;
      case 'ept-violation':
        this.eptViolation(v, exit);
        break;
      default:
        break;
    }
    for (const o of vm.observers) o.sliceEnd(cpu);
    if (vm.state === 'running' && vm.vcpus.every((c) => !c.cpu.canBeWokenByInterrupt() && c.cpu.state !== 'running')) {
      const wakeable = vm.vcpus.some((c) => c.cpu.state === 'wait-for-sipi') && vm.vcpus.some((c) => c.cpu.state === 'running');
      if (!wakeable) vm.stop({ reason: 'halted', code: 0, detail: 'all vCPUs halted with interrupts disabled' });
    }
  }

  /**
   * Guest-physical addresses with nothing behind them read as all-ones and
   * ignore writes, as on a PC bus; the guest never reaches other memory.
   */
  private eptViolation(v: Vcpu, exit: Extract<SliceExit, { kind: 'ept-violation' }>): void {
    const vm = v.vm;
    const page = Number(exit.gpa & ~0xfffn);
    let r: ReturnType<GuestMemory['handleViolation']>;
    try {
      r = vm.vmMemory.handleViolation(page);
    } catch (e) {
      // Host frames ran out for a copy on write (linked clones) or a lazy page: this VM stops with a
      // report; the process and the other VMs go on.
      if (!(e instanceof FrameAllocatorError)) throw e;
      vm.stop({ reason: 'error', code: 2, detail: `vCPU ${v.index}: out of host memory: GPA 0x${page.toString(16)} needs a frame of its own (${exit.access}): ${e.message}` });
      return;
    }
    if (r === 'populated' || r === 'copied') {
      // The access retries; a populated page had no translation anywhere, a copied one was shot down.
      v.cpu.engine.flushTlb();
      return;
    }
    if (r === 'not-ram' && vm.mapLapicOnDemand(page)) {
      v.cpu.engine.flushTlb();
      return;
    }
    if (r === 'fault') {
      vm.stop({ reason: 'error', code: 2, detail: `vCPU ${v.index}: EPT violation on guest RAM at GPA 0x${exit.gpa.toString(16)} (${exit.access})` });
      return;
    }
    if (exit.access === 'write') {
      if (dropWrite(v.cpu).kind === 'undecodable') vm.stop({ reason: 'error', code: 2, detail: `vCPU ${v.index}: write to unbacked GPA 0x${exit.gpa.toString(16)} from an undecodable instruction` });
      return;
    }
    try {
      vm.vmMemory.mapOpenBus(page);
    } catch (e) {
      // Host frames ran out: this VM stops with a report; the process and the other VMs go on.
      if (!(e instanceof OpenBusExhausted)) throw e;
      vm.stop({ reason: 'error', code: 2, detail: `vCPU ${v.index}: ${e.message}` });
      return;
    }
    v.cpu.engine.flushTlb();
  }

  // ------------------------------------------------------------ VM state

  /** One VM's state record and guest memory, between slices (the machine must not be inside a run). */
  snapshotVm(vm: Vm): VmImage {
    if (this.machine.hostCpus.some((h) => h.running)) throw new StateError('hypervisor', 'running', 'cannot save a VM while a CPU is running');
    return { state: { ...vm.saveState(), scheduling: this.sched.saveVm(vm) }, memory: [...vm.vmMemory.contentRanges()].sort((a, b) => a.gpa - b.gpa) };
  }

  /**
   * Builds a VM from a record of Vm.saveState() and its memory, and starts
   * scheduling it. Memory comes as ranges (copied now, or on first touch with
   * `populate: 'lazy'`), or as a shared image that a linked clone maps
   * copy-on-write. Every check runs before the VM exists; a refused record
   * leaves the hypervisor as it was. `keepCode` (a linked clone only): the
   * engines keep their translated code, which a restore otherwise drops whole;
   * the clone's own frames were written through PhysicalMemory.write, which
   * drops code over them, and its shared frames hold the base unchanged.
   */
  restoreVm(state: StateRecord, memory: VmMemorySource, opts: { name?: string; portable?: boolean; start?: boolean; keepCode?: boolean } = {}): Vm {
    const who = 'vm';
    checkVersion(state, Vm.STATE_VERSION, who);
    const name = opts.name ?? stateString(state, 'name', who);
    const vcpus = stateNumber(state, 'vcpus', who);
    if (!Number.isInteger(vcpus) || vcpus < 1 || vcpus > 64) throw new StateError(who, 'vcpus', `${vcpus} is not 1..64`);
    const memBytes = stateNumber(state, 'memBytes', who);
    if (!Number.isSafeInteger(memBytes) || memBytes < 2 * 1024 * 1024 || memBytes % 4096 !== 0) throw new StateError(who, 'memBytes', `${memBytes} is not a guest RAM size (a multiple of 4 KiB, at least 2 MiB)`);
    const clockNs = stateNumber(state, 'clockNs', who);
    // Virtual time must stay exact in a double; past 2^50 ns (13 days) timer arithmetic would round.
    if (!Number.isSafeInteger(clockNs) || clockNs < 0 || clockNs > 2 ** 50) throw new StateError(who, 'clockNs', `${clockNs} is not a virtual time in 0..2^50 ns`);
    let memOpts: GuestMemoryOptions;
    if ('base' in memory) memOpts = { base: memory.base, ...(memory.privateRanges ? { privateRanges: memory.privateRanges } : {}) };
    else {
      for (const [i, r] of memory.ranges.entries()) {
        if (!Number.isSafeInteger(r.gpa) || r.gpa < 0 || r.gpa % 4096 !== 0 || r.gpa + r.bytes.length > memBytes) throw new StateError(who, `memory[${i}]`, `range 0x${r.gpa.toString(16)}+0x${r.bytes.length.toString(16)} is not page-aligned guest RAM of ${memBytes} bytes`);
      }
      memOpts = memory.populate === 'lazy' ? { populate: 'lazy', source: pageSource(memory.ranges) } : { populate: 'eager' };
    }
    const vm = this.newVm({ name, vcpus, memBytes, clockNs, memory: memOpts });
    try {
      if (!('base' in memory) && memory.populate !== 'lazy') for (const r of memory.ranges) vm.vmMemory.write(r.gpa, r.bytes);
      vm.restoreState(state, { ...(opts.portable ? { portable: true } : {}), ...(opts.keepCode && 'base' in memory ? { keepCode: true } : {}) });
    } catch (e) {
      vm.close();
      throw e;
    }
    if (opts.start !== false) {
      this.addVm(vm);
      this.restoreScheduling(vm, state);
    }
    return vm;
  }

  /**
   * Puts a running VM back at a snapshot in place (monitor `snapshot-load`):
   * the same VM object, vCPUs and guest frames, with the snapshot's memory,
   * devices, vCPUs and clock. The record is first checked whole by building a
   * throwaway VM from it (lazy memory: nothing copied), so a refused record
   * changes nothing.
   */
  loadVmInPlace(vm: Vm, image: VmImage, opts: { portable?: boolean } = {}): void {
    if (!this.vms.includes(vm)) throw new StateError('hypervisor', 'vm', `${vm.name} is not a VM of this hypervisor`);
    const probe = this.restoreVm(image.state, { ranges: image.memory, populate: 'lazy' }, { ...opts, start: false });
    probe.close();
    if (probe.vcpuCount !== vm.vcpuCount) throw new StateError(`vm ${vm.name}`, 'vcpus', `snapshot has ${probe.vcpuCount} vCPUs, this VM ${vm.vcpuCount}`);
    if (probe.vmMemory.ramBytes !== vm.vmMemory.ramBytes) throw new StateError(`vm ${vm.name}`, 'memBytes', `snapshot has ${probe.vmMemory.ramBytes} bytes of RAM, this VM ${vm.vmMemory.ramBytes}`);
    // Checked whole before it changes anything, like the probe above.
    this.restoreScheduling(vm, image.state, { inPlace: true });
    const given = new Set<number>();
    for (const r of image.memory) for (let off = 0; off < r.bytes.length; off += 4096) given.add(r.gpa + off);
    const zero = new Uint8Array(4096);
    for (const m of [...vm.vmMemory.ept.mappings(0, vm.vmMemory.ramBytes)]) {
      for (let off = 0; off < m.size; off += 4096) if (!given.has(m.gpa + off)) vm.vmMemory.write(m.gpa + off, zero);
    }
    for (const r of image.memory) vm.vmMemory.write(r.gpa, r.bytes);
    vm.loadInPlace(image.state, opts);
    this.allCache = null;
    this.vcpuByCpu.clear();
    this.machine.kick();
  }

  /** A record's optional scheduling state (older snapshots have none: the VM then starts with fresh shares). */
  restoreScheduling(vm: Vm, state: StateRecord, opts: { inPlace?: boolean } = {}): void {
    const s = state['scheduling'];
    if (s === undefined) return;
    if (s === null || typeof s !== 'object' || Array.isArray(s) || s instanceof Uint8Array) throw new StateError(`vm ${vm.name}`, 'scheduling', 'not a record');
    try {
      this.sched.restoreVm(vm, s);
    } catch (e) {
      if (!opts.inPlace) this.removeVm(vm);
      throw e;
    }
  }

  /** The per-guest JSON the CLI prints. */
  guestReports(): GuestReport[] {
    return this.vms.map((vm) => ({
      name: vm.name,
      exit: vm.exit,
      serial: vm.serial,
      exits: vm.exitCounts(),
      vcpus: vm.vcpus.map((c) => {
        const idle = this.idleStats(c);
        return { index: c.index, state: c.cpu.state, hostMs: Math.round(c.hostMs * 10) / 10, lastPcpu: c.lastPcpu, ...(idle ? { idle } : {}) };
      }),
    }));
  }

  close(): void {
    for (const vm of this.vms) vm.close();
  }
}
