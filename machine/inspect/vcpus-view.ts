/**
 * VMs / vCPUs view. Today these are the machine's own CPUs; the hypervisor
 * adds its VMs through the typed hook. Every CPU engine runs on the Node
 * main thread, so "host" names that thread and the process CPU time.
 */
import type { CpuRunState, X86Cpu } from '../cpu/x86-cpu.js';
import type { CpuMode } from '../cpu/x86/registers.js';
import type { PcMachine } from '../platform/pc.js';
import { cpuLocation } from './cpu-view.js';
import { hex64 } from './hex.js';
import type { IdleStatsReport } from './idle-report.js';

export interface VcpuView {
  /** 'cpu0', later 'vm:<name>/vcpu<n>'. */
  id: string;
  kind: 'machine-cpu' | 'vm-vcpu';
  index: number;
  apicId: number;
  state: CpuRunState;
  mode: CpuMode;
  linearRip: string;
  /** Exit/event counters kept by the CPU (hlt, irq:0x20, exception:0xe, cpuid, mwait, ...). */
  counters: Record<string, number>;
  /** Machine events of each kind for this CPU, from the bounded event log. */
  events: Record<string, number>;
  /** Virtual-time units executed (code bytes of entered blocks). */
  units: string;
  host: { thread: string; pid: number };
  /** A hypervisor vCPU's idling counters (hypervisor/scheduling/idle-stats.ts). */
  idle?: IdleStatsReport;
}

export interface VmView {
  name: string;
  state: string;
  /** Why the VM stopped, once it has. */
  exit: string | null;
  vcpus: VcpuView[];
  /** Exit counters of the VM (hypervisor exits by reason). */
  exits: Record<string, number>;
}

export interface VcpusHooks {
  vms?: () => readonly VmView[];
}

export interface VcpusView {
  cpus: VcpuView[];
  vms: VmView[];
  /** Process CPU time (user + system) so far: all CPUs share one host thread. */
  hostCpuMs: number;
}

/** One CPU's line in the view; `index` is its number in the inspection API's CPU list. */
export function vcpuView(cpu: X86Cpu, index: number, id: string, kind: VcpuView['kind'], events: Record<string, number> = {}, hostThread = 'node main thread'): VcpuView {
  const loc = cpuLocation(cpu);
  return {
    id,
    kind,
    index,
    apicId: cpu.apicId,
    state: cpu.state,
    mode: loc.mode,
    linearRip: hex64(loc.linearRip),
    counters: { ...cpu.counters },
    events,
    units: cpu.units.toString(),
    host: { thread: hostThread, pid: process.pid },
  };
}

export function vcpusView(machine: PcMachine, hooks: VcpusHooks = {}): VcpusView {
  const perCpu = new Map<number, Record<string, number>>();
  for (const e of machine.events) {
    if (e.cpu === undefined) continue;
    const rec = perCpu.get(e.cpu) ?? {};
    rec[e.kind] = (rec[e.kind] ?? 0) + 1;
    perCpu.set(e.cpu, rec);
  }
  const usage = process.cpuUsage();
  return {
    cpus: machine.cpus.map((c) => vcpuView(c, c.index, `cpu${c.index}`, 'machine-cpu', perCpu.get(c.index) ?? {})),
    vms: [...(hooks.vms?.() ?? [])],
    hostCpuMs: Math.round((usage.user + usage.system) / 1000),
  };
}
