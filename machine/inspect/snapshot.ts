/**
 * One request, every view: what a TUI refresh or a monitor `snapshot` asks
 * for. Each part is computed independently; a part that fails (a bad
 * address, a closed machine) is reported in `errors` and the rest still comes back.
 */
import type { PcMachine } from '../platform/pc.js';
import type { X86Cpu } from '../cpu/x86-cpu.js';
import { cpuView, type CpuView } from './cpu-view.js';
import { disassemble, type DisassemblyRequest, type DisassemblyView } from './disassembly.js';
import { readMemory, type MemoryRequest, type MemoryView } from './memory-view.js';
import { pageWalkView, type PageWalkOptions, type PageWalkView } from './page-walk-view.js';
import { timelineView, type TimelineHooks, type TimelineView } from './timeline-view.js';
import { eventsView, type EventsRequest, type EventsView } from './events-view.js';
import { consolesView, type ConsoleHooks, type ConsolesView } from './consoles-view.js';
import { vcpusView, type VcpusHooks, type VcpusView } from './vcpus-view.js';
import { parseAddress } from './hex.js';

/** A CPU the inspection API can look at: the machine's own, or a VM's vCPU (whose "physical" is guest-physical). */
export interface CpuEntry {
  /** 'cpu0', 'vm:hello/vcpu0'. */
  id: string;
  kind: 'machine-cpu' | 'vm-vcpu';
  cpu: X86Cpu;
}

export interface GuestCpuHooks {
  /** vCPUs of hypervisor guests, appended after the machine's CPUs in the CPU numbering. */
  guestCpus?: () => readonly CpuEntry[];
}

export type InspectHooks = TimelineHooks & ConsoleHooks & VcpusHooks & GuestCpuHooks;

/** Every inspectable CPU: the machine's CPUs first (index = CPU number), then guest vCPUs. */
export function inspectableCpus(machine: PcMachine, hooks: GuestCpuHooks = {}): CpuEntry[] {
  return [...machine.cpus.map((cpu) => ({ id: `cpu${cpu.index}`, kind: 'machine-cpu' as const, cpu })), ...(hooks.guestCpus?.() ?? [])];
}

export const SNAPSHOT_PARTS = ['cpu', 'disassembly', 'memory', 'pageWalk', 'timeline', 'events', 'consoles', 'vcpus'] as const;
export type SnapshotPart = (typeof SNAPSHOT_PARTS)[number];

export interface PageWalkRequest extends PageWalkOptions {
  address: bigint | number | string;
}

export interface SnapshotRequest {
  /** Selected CPU for cpu, disassembly, virtual memory and page walk (default 0). */
  cpu?: number;
  /** Parts to compute (default: all). */
  parts?: readonly SnapshotPart[];
  memory?: Omit<MemoryRequest, 'cpu'>;
  disassembly?: DisassemblyRequest;
  /** No page walk unless an address is given. */
  pageWalk?: PageWalkRequest | null;
  events?: EventsRequest;
  consoles?: { tailBytes?: number };
  timeline?: { limit?: number };
}

export interface InspectionSnapshot {
  cpu?: CpuView;
  disassembly?: DisassemblyView;
  memory?: MemoryView;
  pageWalk?: PageWalkView;
  timeline?: TimelineView;
  events?: EventsView;
  consoles?: ConsolesView;
  vcpus?: VcpusView;
  /** Parts that could not be computed, with the reason. */
  errors: Partial<Record<SnapshotPart, string>>;
}

/** The CPU to inspect, refusing a machine whose engines were already closed. */
export function inspectableCpu(machine: PcMachine, index: number, hooks: GuestCpuHooks = {}): X86Cpu {
  const all = inspectableCpus(machine, hooks);
  const cpu = all[index]?.cpu;
  if (!cpu) throw new RangeError(`no CPU ${index} (CPUs: ${all.map((c, i) => `${i}=${c.id}`).join(', ')})`);
  if (cpu.isClosed) throw new Error('the machine has been shut down; CPU state is gone');
  return cpu;
}

export function inspectMachine(machine: PcMachine, req: SnapshotRequest = {}, hooks: InspectHooks = {}): InspectionSnapshot {
  const parts = new Set<SnapshotPart>(req.parts ?? SNAPSHOT_PARTS);
  const cpuIndex = req.cpu ?? 0;
  const out: InspectionSnapshot = { errors: {} };
  const part = <K extends SnapshotPart>(name: K, make: () => NonNullable<InspectionSnapshot[K]>): void => {
    if (!parts.has(name)) return;
    try {
      (out as Record<SnapshotPart, unknown>)[name] = make();
    } catch (e) {
      out.errors[name] = (e as Error).message;
    }
  };
  const cpu = (): X86Cpu => inspectableCpu(machine, cpuIndex, hooks);
  part('cpu', () => cpuView(cpu()));
  part('disassembly', () => disassemble(cpu(), req.disassembly ?? {}));
  part('memory', () => readMemoryFor(machine, { space: 'physical', address: 0, length: 256, ...req.memory, cpu: cpuIndex }, hooks));
  if (req.pageWalk) {
    const w = req.pageWalk;
    part('pageWalk', () => pageWalkView(cpu(), parseAddress(w.address), { ...(w.access ? { access: w.access } : {}), ...(w.user !== undefined ? { user: w.user } : {}) }));
  }
  part('timeline', () => timelineView(machine, { ...(req.timeline?.limit !== undefined ? { limit: req.timeline.limit } : {}), hooks }));
  part('events', () => eventsView(machine, req.events ?? {}));
  part('consoles', () => consolesView(machine, { ...(req.consoles?.tailBytes !== undefined ? { tailBytes: req.consoles.tailBytes } : {}), hooks }));
  part('vcpus', () => {
    for (const c of machine.cpus) if (c.isClosed) throw new Error('the machine has been shut down; CPU state is gone');
    return vcpusView(machine, hooks);
  });
  return out;
}

/**
 * Memory through the selected CPU: physical reads of a guest vCPU are
 * guest-physical (its walk memory), virtual reads use its page tables.
 */
export function readMemoryFor(machine: PcMachine, req: MemoryRequest, hooks: GuestCpuHooks = {}): MemoryView {
  const index = req.cpu ?? 0;
  const entry = inspectableCpus(machine, hooks)[index];
  if (req.space === 'physical' && (!entry || entry.kind === 'machine-cpu')) return readMemory(machine, req);
  const cpu = inspectableCpu(machine, index, hooks);
  return readMemory({ memory: machine.memory, cpus: [], cpuFor: () => cpu }, req);
}
