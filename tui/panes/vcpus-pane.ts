/** VMs / vCPUs: state, mode, RIP, exit/event counters, host thread of every CPU. */
import type { PaneRenderer } from './pane.js';
import { errorLines } from './pane.js';
import type { VcpuView } from '../../machine/inspect/vcpus-view.js';
import { esc, shortHex } from '../text.js';

const STATE_COLOR: Record<string, string> = { running: 'green-fg', halted: 'yellow-fg', mwait: 'yellow-fg', 'wait-for-sipi': 'gray-fg', shutdown: 'red-fg' };

function cpuLines(v: VcpuView, selected: boolean): string[] {
  const color = STATE_COLOR[v.state] ?? 'white-fg';
  const head = `${selected ? '{inverse}' : ''}${v.index}:${esc(v.id)}${selected ? '{/inverse}' : ''} {${color}}${v.state}{/${color}} ${v.mode} ${shortHex(v.linearRip)}`;
  const counts = Object.entries(v.counters)
    .sort((a, b) => b[1] - a[1])
    .map(([k, n]) => `${k}=${n}`)
    .join(' ');
  return [head, `  {gray-fg}${esc(counts || 'no exits yet')}{/gray-fg}`, ...(v.idle ? [idleLine(v.idle)] : [])];
}

const us = (ns: number): string => `${(ns / 1000).toFixed(ns < 10_000 ? 1 : 0)}us`;

/** Idle policy and counters of a hypervisor vCPU: entries and time per state, wake latency, switches, last decision. */
export function idleLine(i: NonNullable<VcpuView['idle']>): string {
  const last = i.decisions.last ? ` last=${i.decisions.last.mode} (${i.decisions.last.reason})` : '';
  return `  {magenta-fg}idle ${i.policy}: native ${i.entries.native}x ${us(i.timeNs.native)}, emulated ${i.entries.emulated}x ${us(i.timeNs.emulated)}; wake p50 ${us(i.wakeLatencyNs.p50)} p99 ${us(i.wakeLatencyNs.p99)}; switches ${i.switches}; released ${i.decisions.released} preempted ${i.decisions.preempted}${esc(last)}{/magenta-fg}`;
}

export const vcpusPane: PaneRenderer = {
  id: 'vcpus',
  render(snap, ui) {
    const v = snap?.vcpus;
    const err = errorLines(snap, 'vcpus');
    if (err || !v) return { title: 'VMs / vCPUs', lines: err ?? [], follow: 'top' };
    const lines: string[] = [];
    for (const c of v.cpus) lines.push(...cpuLines(c, c.index === ui.cpu));
    for (const vm of v.vms) {
      lines.push(`{cyan-fg}VM ${esc(vm.name)}{/cyan-fg} ${vm.state}${vm.exit ? ` (${esc(vm.exit)})` : ''}`);
      for (const c of vm.vcpus) lines.push(...cpuLines(c, c.index === ui.cpu).map((l) => ` ${l}`));
    }
    lines.push(`{gray-fg}host: ${v.cpus[0]?.host.thread ?? '-'}, pid ${v.cpus[0]?.host.pid ?? '-'}, ${v.hostCpuMs} ms CPU{/gray-fg}`);
    return { title: 'VMs / vCPUs', lines, follow: 'top' };
  },
};
