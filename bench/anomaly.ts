/**
 * The cost of behaviour profiles in the bench: the compute guest run bare
 * and run with the security service watching it (observer, dirty-log
 * harvests every 100 ms of guest time, a detector holding it to a profile
 * learned from an earlier run). Runs alternate, so load on the machine hits
 * both alike; the row reports process CPU time, median of each.
 */
import { createGuestMachine } from '../vmm/run-guests.js';
import { SecurityService } from '../hypervisor/security/security-service.js';
import type { BehaviourProfile } from '../hypervisor/security/profile.js';
import { median, quantile, type BenchRow } from './row.js';

const MiB = 1024 * 1024;
const RUNS = Number(process.env['FIRMAMENT_ANOMALY_RUNS'] ?? 9);

interface Measured {
  cpuMs: number;
  wallMs: number;
  anomalies: number;
  profile?: BehaviourProfile;
}

async function runCompute(path: string, cmdline: string, mode: 'bare' | 'learn' | { profile: BehaviourProfile }): Promise<Measured> {
  const g = createGuestMachine([{ path, memBytes: 64 * MiB, vcpus: 1, cmdline }], { pcpus: 1, pace: 'realtime' });
  const security = mode === 'bare' ? null : new SecurityService(g.hypervisor);
  const learned = mode === 'learn' ? security!.learn(undefined, 3_600_000) : undefined;
  if (typeof mode === 'object') security!.setProfile(undefined, mode.profile);
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  try {
    const exit = await g.machine.run({ timeoutMs: 600_000 });
    if (exit.reason !== 'debug-exit' || exit.code !== 1) throw new Error(`compute guest ended with ${exit.reason} ${exit.code}`);
    const cpu = process.cpuUsage(c0);
    const out: Measured = { cpuMs: (cpu.user + cpu.system) / 1000, wallMs: performance.now() - t0, anomalies: security?.anomalies().length ?? 0 };
    if (learned) out.profile = await learned;
    return out;
  } finally {
    security?.close();
    g.hypervisor.close();
    g.machine.close();
  }
}

/** Overhead of the security service on the compute guest (goal: under 2%). */
export async function anomalyBenchRows(computeGuest: string, cmdline = 'rounds=2048'): Promise<BenchRow[]> {
  const { profile } = await runCompute(computeGuest, cmdline, 'learn');
  // One uncounted pair: V8 compiles the observer's and the machine's hot paths in the first runs.
  await runCompute(computeGuest, cmdline, 'bare');
  await runCompute(computeGuest, cmdline, { profile: profile! });
  const bare: Measured[] = [];
  const watched: Measured[] = [];
  // ABBA order: whichever runs second in a pair (a warmer heap, a later load) alternates.
  for (let i = 0; i < RUNS; i++) {
    if (i % 2 === 0) bare.push(await runCompute(computeGuest, cmdline, 'bare'));
    watched.push(await runCompute(computeGuest, cmdline, { profile: profile! }));
    if (i % 2 === 1) bare.push(await runCompute(computeGuest, cmdline, 'bare'));
  }
  const b = median(bare.map((m) => m.cpuMs));
  const w = median(watched.map((m) => m.cpuMs));
  const overhead = ((w - b) / b) * 100;
  // Each watched run against the bare run next to it: the load on the machine changes slowly.
  const paired = watched.map((m, i) => (m.cpuMs / bare[i]!.cpuMs - 1) * 100);
  const pct = (x: number): string => `${x >= 0 ? '+' : ''}${x.toFixed(1)}%`;
  const spread = `pairs ${pct(median(paired))} median, ${pct(quantile(paired, 0.25))} to ${pct(quantile(paired, 0.75))} quartiles, ${pct(Math.min(...paired))} to ${pct(Math.max(...paired))} range`;
  const range = (ms: Measured[]): string => `${Math.min(...ms.map((m) => m.cpuMs)).toFixed(0)}-${Math.max(...ms.map((m) => m.cpuMs)).toFixed(0)}`;
  const anomalies = watched.reduce((n, m) => n + m.anomalies, 0);
  return [
    {
      metric: `compute guest (${cmdline}) watched by the security service`,
      firmament: `${overhead >= 0 ? '+' : ''}${overhead.toFixed(1)}% CPU`,
      qemu: 'n/a',
      ratio: 'n/a',
      note: `process CPU, median of ${RUNS} alternating runs after a warm-up pair: ${b.toFixed(0)} ms bare (${range(bare)}), ${w.toFixed(0)} ms watched (${range(watched)}; observer, dirty pages sampled every 100 ms, detector with a learned profile); ${spread}; goal < 2%; ${anomalies} anomalies raised`,
    },
  ];
}

// `npx tsx bench/anomaly.ts`: this row alone.
if (process.argv[1]?.endsWith('bench/anomaly.ts')) {
  const { buildImages } = await import('../tools/build-images.mjs');
  const images = await buildImages({ quiet: true });
  for (const r of await anomalyBenchRows(images.guests['compute']!, process.argv[2])) console.log(`${r.metric}: ${r.firmament} (${r.note})`);
}
