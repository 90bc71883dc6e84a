/**
 * Where a live update's blackout goes, in one process (no scheduling noise): N rounds of recording
 * the state of 4 idle VMs (per part), encoding, decoding and adopting it on a second machine over
 * the same RAM, in CPU milliseconds of this process. `npx tsx bench/live-update-profile.ts [rounds] [vms]`
 */
import { join } from 'node:path';
import { PROJECT_ROOT } from '../machine/cpu/unicorn/locate.js';
import { createGuestMachine, guestHostMachine } from '../vmm/run-guests.js';
import { adoptLiveState, saveLiveState } from '../vmm/live-update/state.js';
import { decodeSnapshot, encodeSnapshot } from '../machine/snapshot/codec.js';

const rounds = Number(process.argv[2] ?? 8);
const n = Number(process.argv[3] ?? 4);
const uptick = join(PROJECT_ROOT, 'images/build/guests/uptick.elf');
const g = createGuestMachine(Array.from({ length: n }, () => ({ path: uptick, memBytes: 16 * 2 ** 20, vcpus: 1, cmdline: 'rounds=1000 period=200 kib=64' })), { pcpus: 1, pace: 'realtime', sharedRam: true });
const running = g.machine.run({ timeoutMs: 60_000 });
while (!g.vms.every((v) => v.serial.includes('round 1 '))) await new Promise((r) => setTimeout(r, 20));
g.machine.pauseAfterRound();
await new Promise((r) => setTimeout(r, 50));
const second = guestHostMachine(g.shape!, g.sharedRam!.bytes);
// CPU time of this thread, not wall time: the machine is shared, and a wall-clock span mostly measures the others.
const time = <T>(f: () => T): [T, number] => {
  const t = process.cpuUsage();
  const r = f();
  const d = process.cpuUsage(t);
  return [r, (d.user + d.system) / 1000];
};
// The successor's fast path (absent in older checkouts, for A/B runs): the next record loaded into the last adoption.
const over = await import('../vmm/live-update/adopt-over.js').catch(() => null);
let kept: { rec: ReturnType<typeof decodeSnapshot>; adopted: ReturnType<typeof adoptLiveState> } | null = null;
const rows: Record<string, number>[] = [];
for (let i = 0; i < rounds; i++) {
  const [, vmSave] = time(() => g.vms.map((v) => v.saveState()));
  const [, cpuSave] = time(() => g.vms.map((v) => v.vcpus.map((c) => c.cpu.saveState())));
  const [, boardSave] = time(() => g.vms.map((v) => v.board.saveState()));
  const [, memSave] = time(() => g.vms.map((v) => v.vmMemory.residentState()));
  const [rec, save] = time(() => saveLiveState(g.hypervisor, g.shape!));
  const [bytes, encode] = time(() => encodeSnapshot(rec));
  const [dec, decode] = time(() => decodeSnapshot(bytes));
  const [adopted, adopt] = time(() => adoptLiveState(dec, second));
  let inPlace = NaN;
  if (over && kept) {
    const k = kept;
    const [r, ms] = time(() => over.adoptOver(k.rec, k.adopted, dec, second));
    if (r.ok) inPlace = ms;
  }
  const [, close] = time(() => kept?.adopted.vms.forEach((v) => v.close()));
  kept = { rec: dec, adopted };
  rows.push({ save, vmSave, cpuSave, boardSave, memSave, encode, decode, adopt, inPlace, close, bytes: bytes.length });
}
const med = (k: string): number => {
  const xs = rows.slice(Math.floor(rows.length / 2)).map((r) => r[k]!).sort((a, b) => a - b);
  return xs[Math.floor(xs.length / 2)]!;
};
console.log(`median of the warm half: ${Object.keys(rows[0]!).map((k) => `${k} ${med(k).toFixed(2)}`).join('  ')}`);
for (const r of rows) console.log(Object.entries(r).map(([k, v]) => `${k} ${k === 'bytes' ? v : v.toFixed(2)}`).join('  '));
g.machine.resume();
g.machine.stop('done');
await running;
process.exit(0);
