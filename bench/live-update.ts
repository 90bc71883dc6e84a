/**
 * `npm run bench` rows for live update (docs/live-update.md): 1 and 4 idle
 * VMs (uptick guest, 16 MiB each, a round every 200 ms of PIT time) run in
 * this process over RAM in a memfd; a successor process (this checkout's
 * `firmament takeover`) prepares, adopts them and runs them to their end.
 * Reported: the blackout per VM (last guest instruction here to the first in
 * the successor) with its old- and new-side parts, and the successor's
 * preparation time (process start to engines built and RAM mapped, while the
 * guests keep running).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createGuestMachine } from '../vmm/run-guests.js';
import { MonitorClient } from '../tui/monitor-client.js';
import { LiveUpdateHost } from '../vmm/live-update/update.js';
import type { LiveUpdateReport } from '../machine/debug/protocol.js';
import type { BenchRow } from './row.js';

const MiB = 1024 * 1024;
const REPEATS = 2;

async function oneUpdate(uptick: string, vms: number): Promise<Extract<LiveUpdateReport, { ok: true }>> {
  // Long enough for a successor to start on a loaded machine; the bench stops the guests through the successor's monitor.
  const guests = Array.from({ length: vms }, () => ({ path: uptick, memBytes: 16 * MiB, vcpus: 1, cmdline: 'rounds=1000 period=200 kib=64' }));
  const g = createGuestMachine(guests, { pcpus: 1, pace: 'realtime', sharedRam: true });
  const dir = mkdtempSync(join(tmpdir(), 'fm-bench-lu-'));
  const monitor = join(dir, 'm.sock');
  const host = new LiveUpdateHost(g.machine, g.hypervisor, g.shape!, g.sharedRam!, { json: true, monitor, storeDir: dir, deadline: null, label: 'bench' });
  const running = g.machine.run({ timeoutMs: 300_000 });
  // Let every guest start (round 1) before the update.
  while (!g.vms.every((v) => v.serial.includes('round 1 ')) && !g.machine.exit) await new Promise((r) => setTimeout(r, 20));
  const report = await host.update({ output: 'ignore' });
  await running;
  if (!report.ok) {
    g.hypervisor.close();
    g.machine.close();
    throw new Error(`live update bench: rolled back: ${report.reason}`);
  }
  await host.released;
  const stopped = host.afterHandover();
  for (let i = 0; ; i++) {
    try {
      const c = await MonitorClient.connect(monitor, 2000);
      await c.request('stop', {});
      c.close();
      break;
    } catch (e) {
      if (i > 200) throw e;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  const status = await stopped;
  rmSync(dir, { recursive: true, force: true });
  if (status !== 0) throw new Error(`live update bench: the successor ended with status ${status}, expected 0 (stopped)`);
  return report;
}

const med = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
};

export async function liveUpdateRows(uptick: string): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  for (const n of [1, 4]) {
    const reports: Extract<LiveUpdateReport, { ok: true }>[] = [];
    for (let i = 0; i < REPEATS; i++) reports.push(await oneUpdate(uptick, n));
    const blackouts = reports.flatMap((r) => r.blackout.map((b) => b.blackoutMs));
    const oldSide = reports.flatMap((r) => r.blackout.map((b) => b.oldSideMs));
    const newSide = reports.flatMap((r) => r.blackout.map((b) => b.newSideMs));
    const save = reports.map((r) => r.phases.saveMs);
    const adopt = reports.map((r) => r.phases.successorAdoptMs);
    const saveCpu = reports.map((r) => r.phases.saveCpuMs ?? NaN);
    const adoptCpu = reports.map((r) => r.phases.successorAdoptCpuMs ?? NaN);
    rows.push({
      metric: `live update, ${n} idle VM${n > 1 ? 's' : ''}: blackout per VM`,
      firmament: `${med(blackouts).toFixed(2)} ms`,
      qemu: 'n/a',
      ratio: 'n/a',
      note: `median of ${blackouts.length} (${Math.min(...blackouts).toFixed(2)}-${Math.max(...blackouts).toFixed(2)}); old side ${med(oldSide).toFixed(2)} ms (record ${med(save).toFixed(2)} ms, CPU ${med(saveCpu).toFixed(2)} ms; successor adopts ${med(adopt).toFixed(2)} ms, CPU ${med(adoptCpu).toFixed(2)} ms), new side ${med(newSide).toFixed(2)} ms to the VM's first slice; state ${reports[0]!.stateBytes} bytes; successor adopted ${reports.map((r) => r.successorAdopted ?? '?').join(', ')}`,
    });
    rows.push({
      metric: `live update, ${n} VM${n > 1 ? 's' : ''}: successor preparation`,
      firmament: `${med(reports.map((r) => r.prepareMs)).toFixed(0)} ms`,
      qemu: 'n/a',
      ratio: 'n/a',
      note: 'spawn to engines built and RAM mapped (Node + tsx start-up included); guests keep running meanwhile',
    });
  }
  return rows;
}
