/**
 * Idle policies (native, emulated, adaptive) on the idling workload guests,
 * in the machine's virtual time (--clock virtual: deterministic, so one run
 * each): wake latency p50/p99 over every vCPU's wake-ups, useful guest work
 * per virtual second (virtual time vCPUs spent running guest code, i.e.
 * executed units, over the run's virtual time) and the host CPU the run took.
 * Also measures the switch cost that SWITCH_NS stands for.
 */
import { createGuestMachine } from '../vmm/run-guests.js';
import { SWITCH_NS, type IdlePolicy } from '../hypervisor/scheduling/idle-controller.js';
import { percentile } from '../hypervisor/scheduling/idle-stats.js';
import type { BenchRow } from './row.js';

export interface IdleWorkload {
  name: string;
  guest: string;
  vcpus: number;
  cmdline: string;
}

export const IDLE_WORKLOADS: readonly IdleWorkload[] = [
  { name: 'IPI ping-pong, 2 vCPUs on 2 pCPUs', guest: 'ipipong', vcpus: 2, cmdline: 'rounds=2000' },
  { name: 'overcommit, 6 vCPUs on 2 pCPUs', guest: 'overcommit', vcpus: 6, cmdline: 'ms=100 period=200' },
  { name: 'phases (ping-pong, then overcommit), 4 vCPUs on 2 pCPUs', guest: 'phases', vcpus: 4, cmdline: 'ms=100 period=200' },
];

export interface IdleRun {
  policy: IdlePolicy;
  virtualNs: number;
  /** Virtual ns of guest code run per virtual second, summed over vCPUs (up to 1e9 × pCPUs... the machine runs one turn at a time: up to 1e9). */
  usefulPerSecond: number;
  p50: number;
  p99: number;
  wakeups: number;
  hostCpuMs: number;
  serial: string;
  /** Per vCPU: idle entries by state and controller decisions. */
  vcpus: { entries: { native: number; emulated: number }; decisions: { native: number; emulated: number; released: number; preempted: number } }[];
}

export async function runIdleWorkload(w: IdleWorkload, guestPath: string, policy: IdlePolicy): Promise<IdleRun> {
  const { machine, hypervisor, vms } = createGuestMachine([{ path: guestPath, memBytes: 32 * 1024 * 1024, vcpus: w.vcpus, cmdline: w.cmdline }], { pcpus: 2, pace: 'virtual' });
  hypervisor.idlePolicy = policy;
  try {
    const cpu0 = process.cpuUsage();
    const exit = await machine.run({ timeoutMs: 600_000 });
    const cpu = process.cpuUsage(cpu0);
    const vm = vms[0]!;
    let runNs = 0;
    const lat: number[] = [];
    const per: IdleRun['vcpus'] = [];
    for (const v of vm.vcpus) {
      const s = hypervisor.idleStatsOf(v)!;
      runNs += s.runNs;
      for (const x of s.latencySamples()) lat.push(x);
      per.push({ entries: { ...s.entries }, decisions: { native: s.decisions.native, emulated: s.decisions.emulated, released: s.decisions.released, preempted: s.decisions.preempted } });
    }
    lat.sort((a, b) => a - b);
    const virtualNs = exit.atNs;
    return { policy, virtualNs, usefulPerSecond: (runNs / virtualNs) * 1e9, p50: percentile(lat, 0.5), p99: percentile(lat, 0.99), wakeups: lat.length, hostCpuMs: (cpu.user + cpu.system) / 1000, serial: vm.serial, vcpus: per };
  } finally {
    hypervisor.close();
    machine.close();
  }
}

/** This emulator's vCPU context switch: HostCpu.bind of one vCPU over another, median of 2000 (ns). */
export function measureSwitchNs(guestPath: string): number {
  const { machine, hypervisor, vms } = createGuestMachine([{ path: guestPath, memBytes: 32 * 1024 * 1024, vcpus: 2, cmdline: '' }], { pcpus: 1, pace: 'virtual' });
  try {
    const h = machine.hostCpus[0]!;
    const [a, b] = vms[0]!.vcpus.map((v) => v.cpu);
    const times: number[] = [];
    for (let i = 0; i < 2200; i++) {
      const t0 = process.hrtime.bigint();
      h.bind(i % 2 ? a! : b!);
      const dt = Number(process.hrtime.bigint() - t0);
      if (i >= 200) times.push(dt);
    }
    times.sort((x, y) => x - y);
    return percentile(times, 0.5);
  } finally {
    hypervisor.close();
    machine.close();
  }
}

const us = (ns: number): string => `${(ns / 1000).toFixed(1)} us`;

export async function idlePolicyRows(guests: Record<string, string>): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  rows.push({ metric: 'vCPU context switch (HostCpu.bind, median of 2000): SWITCH_NS models it', firmament: us(measureSwitchNs(guests['ipipong']!)), qemu: '', ratio: '', note: `SWITCH_NS = ${us(SWITCH_NS)}` });
  for (const w of IDLE_WORKLOADS) {
    const runs: IdleRun[] = [];
    for (const p of ['native', 'emulated', 'adaptive', 'haltpoll'] as const) runs.push(await runIdleWorkload(w, guests[w.guest]!, p));
    const bestFixed = Math.max(runs[0]!.usefulPerSecond, runs[1]!.usefulPerSecond);
    for (const r of runs) {
      const vs = r.policy === 'adaptive' || r.policy === 'haltpoll' ? `, ${((r.usefulPerSecond / bestFixed) * 100).toFixed(1)}% of the best fixed policy` : '';
      rows.push({
        metric: `idle ${w.name}: ${r.policy}`,
        firmament: `${(r.usefulPerSecond / 1e6).toFixed(1)} M units/virtual s`,
        qemu: '',
        ratio: '',
        note: `wake p50 ${us(r.p50)} p99 ${us(r.p99)} (${r.wakeups} wake-ups), ${(r.virtualNs / 1e6).toFixed(1)} virtual ms, host CPU ${Math.round(r.hostCpuMs)} ms${vs}`,
      });
    }
  }
  return rows;
}
