/**
 * VMs / vCPUs view. Today these are the machine's own CPUs; the hypervisor
 * adds its VMs through the typed hook. Every CPU engine runs on the Node
 * main thread, so "host" names that thread and the process CPU time.
 */
import type { CpuRunState } from '../cpu/x86-cpu.js';
import type { CpuMode } from '../cpu/x86/registers.js';
import type { PcMachine } from '../platform/pc.js';
import { cpuLocation } from './cpu-view.js';
import { hex64 } from './hex.js';

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
}

export interface VmView {
  name: string;
  vcpus: VcpuView[];
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
    cpus: machine.cpus.map((c) => {
      const loc = cpuLocation(c);
      return {
        id: `cpu${c.index}`,
        kind: 'machine-cpu' as const,
        index: c.index,
        apicId: c.apicId,
        state: c.state,
        mode: loc.mode,
        linearRip: hex64(loc.linearRip),
        counters: { ...c.counters },
        events: perCpu.get(c.index) ?? {},
        units: c.units.toString(),
        host: { thread: 'node main thread', pid: process.pid },
      };
    }),
    vms: [...(hooks.vms?.() ?? [])],
    hostCpuMs: Math.round((usage.user + usage.system) / 1000),
  };
}
