import { openSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildImages } from '../../tools/build-images.mjs';
import { createGuestMachine, finishWithFirstVm, guestHostMachine, type GuestMachine } from '../../vmm/run-guests.js';
import { adoptLiveState, saveLiveState, LIVE_UPDATE_VERSION } from '../../vmm/live-update/state.js';
import { SharedRam } from '../../machine/memory/shared-ram.js';
import { decodeSnapshot, encodeSnapshot } from '../../machine/snapshot/codec.js';
import { StateError, type StateRecord } from '../../machine/state.js';
import type { PcMachine } from '../../machine/platform/pc.js';
import type { Vm } from '../../hypervisor/vm.js';

/**
 * The adoption half of live update, in one process: a hypervisor running
 * guests over RAM in a memfd is recorded without its memory, and a second
 * machine over a second mapping of the same memfd adopts it. Every GPA
 * translates to the same HPA, nothing is allocated, and the guests finish
 * exactly as an un-updated run (same console, exit and virtual nanosecond).
 */
const MiB = 1024 * 1024;
let uptick: string;

beforeAll(async () => {
  uptick = (await buildImages({ quiet: true })).guests['uptick']!;
});

function guests(vcpus: number[]): { path: string; memBytes: number; vcpus: number; cmdline: string }[] {
  return vcpus.map((n, i) => ({ path: uptick, memBytes: 16 * MiB, vcpus: n, cmdline: `rounds=8 period=5 kib=${256 + 128 * i}` }));
}

async function reference(vcpus: number[]): Promise<{ serials: string[]; code: number; atNs: number[] }> {
  const g = createGuestMachine(guests(vcpus), { pcpus: 1, pace: 'virtual' });
  try {
    const exit = await g.machine.run({ timeoutMs: 300_000 });
    return { serials: g.vms.map((v) => v.serial), code: exit.code, atNs: g.vms.map((v) => v.exit?.atNs ?? -1) };
  } finally {
    g.hypervisor.close();
    g.machine.close();
  }
}

/** Runs until the first VM has printed round 3, pauses at the end of that round, and records the hypervisor. */
async function recordMidRun(g: GuestMachine): Promise<StateRecord> {
  const vm = g.vms[0]!;
  vm.onSerial = () => {
    if (vm.serial.includes('round 3 ')) g.machine.pauseAfterRound();
  };
  const running = g.machine.run({ timeoutMs: 300_000 });
  while (!g.machine.paused && !g.machine.exit) await new Promise((r) => setTimeout(r, 2));
  expect(g.machine.exit).toBeNull();
  const rec = saveLiveState(g.hypervisor, g.shape!);
  g.machine.stop('handed over');
  await running;
  return rec;
}

function translations(vms: readonly Vm[]): (bigint | null)[] {
  return vms.flatMap((vm) => [0, 0x1000, 0x100000, 0x800000, vm.vmMemory.ramBytes - 0x1000, 0xfee00000].map((gpa) => vm.vmMemory.secondLevel.translate(BigInt(gpa), 'read')?.hpa ?? null));
}

/** A descriptor of its own onto the same memfd, as a successor process inherits one. */
function reopen(g: GuestMachine): number {
  return openSync(`/proc/self/fd/${g.sharedRam!.fd}`, 'r+');
}

function adoptInto(old: GuestMachine, rec: StateRecord): { machine: PcMachine; vms: Vm[]; ram: SharedRam } {
  const ram = SharedRam.adopt(reopen(old), old.shape!.hostBytes);
  const machine = guestHostMachine(old.shape!, ram.bytes);
  const { hypervisor, vms } = adoptLiveState(decodeSnapshot(encodeSnapshot(rec)), machine);
  finishWithFirstVm(machine, hypervisor, vms);
  return { machine, vms, ram };
}

describe('live update: adopting a hypervisor over the same RAM', () => {
  it.each([
    ['one VM, one vCPU', [1]],
    ['an SMP VM and a second VM', [2, 1]],
  ])('%s continues exactly as an un-updated run', async (_label, vcpus) => {
    const ref = await reference(vcpus);
    expect(ref.serials[0]).toContain('uptick: done');

    const old = createGuestMachine(guests(vcpus), { pcpus: 1, pace: 'virtual', sharedRam: true });
    const rec = await recordMidRun(old);
    expect(rec['version']).toBe(LIVE_UPDATE_VERSION);
    const before = translations(old.vms);
    const usageBefore = old.hypervisor.host.allocator.usage();
    const serialBefore = old.vms.map((v) => v.serial);
    expect(serialBefore[0]).toContain('round 3 ');
    expect(serialBefore[0]).not.toContain('done');
    old.machine.close();

    const next = adoptInto(old, rec);
    try {
      expect(translations(next.vms)).toEqual(before);
      expect(before.filter((h) => h !== null).length).toBeGreaterThan(4);
      const hv = next.vms[0]!.machine.scheduler as unknown as { host: { allocator: { usage(): unknown } } };
      expect(hv.host.allocator.usage()).toEqual(usageBefore);
      expect(next.vms.map((v) => v.serial)).toEqual(serialBefore);
      const exit = await next.machine.run({ timeoutMs: 300_000 });
      expect(next.vms.map((v) => v.serial)).toEqual(ref.serials);
      expect(exit.code).toBe(ref.code);
      expect(next.vms.map((v) => v.exit?.atNs ?? -1)).toEqual(ref.atNs);
    } finally {
      next.machine.close();
      next.ram.close();
    }
  }, 600_000);

  it('refuses a record of an unknown version, a wrong host shape and a corrupt EPT root, and changes nothing', async () => {
    const old = createGuestMachine(guests([1]), { pcpus: 1, pace: 'virtual', sharedRam: true });
    const rec = await recordMidRun(old);
    const ramBefore = old.sharedRam!.bytes.slice();
    old.machine.close();
    const tryAdopt = (r: StateRecord): Error => {
      const ram = SharedRam.adopt(reopen(old), old.shape!.hostBytes);
      const machine = guestHostMachine(old.shape!, ram.bytes);
      try {
        adoptLiveState(r, machine);
      } catch (e) {
        return e as Error;
      } finally {
        machine.close();
        ram.close();
      }
      throw new Error('adopted a bad record');
    };
    const newer = tryAdopt({ ...rec, version: LIVE_UPDATE_VERSION + 1 });
    expect(newer).toBeInstanceOf(StateError);
    expect(newer.message).toMatch(/live-update: state field 'version': record version 2 is newer/);
    const host = rec['host'] as StateRecord;
    expect(tryAdopt({ ...rec, host: { ...host, hostBytes: (host['hostBytes'] as number) * 2 } }).message).toMatch(/host.hostBytes/);
    const vms = rec['vms'] as StateRecord[];
    const mem = vms[0]!['memory'] as StateRecord;
    const ept = mem['ept'] as StateRecord;
    const corrupt = { ...rec, vms: [{ ...vms[0]!, memory: { ...mem, ept: { ...ept, pml4: (ept['pml4'] as number) + 0x1000 } } }] };
    // Another table frame as the root: the tables adopt, and the self-check catches the wrong answers.
    expect(tryAdopt(corrupt).message).toMatch(/translations\[0\]': GPA 0x0 translates to .* after adoption, 0x[0-9a-f]+ before/);
    // Nothing of the shared RAM was written by the refusals.
    expect(Buffer.compare(old.sharedRam!.bytes, ramBefore)).toBe(0);
    old.sharedRam!.close();
  }, 600_000);
});
