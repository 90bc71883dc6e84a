import { openSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildImages } from '../../tools/build-images.mjs';
import { createGuestMachine, finishWithFirstVm, guestHostMachine, type GuestMachine } from '../../vmm/run-guests.js';
import { adoptLiveState, saveLiveState } from '../../vmm/live-update/state.js';
import { adoptOver, residentChange } from '../../vmm/live-update/adopt-over.js';
import { SharedRam } from '../../machine/memory/shared-ram.js';
import { decodeSnapshot, encodeSnapshot } from '../../machine/snapshot/codec.js';
import type { StateRecord } from '../../machine/state.js';
import type { Vm } from '../../hypervisor/vm.js';

/**
 * The successor's fast path: it adopts the rehearsal record (taken while the
 * guests still ran), and the final record, taken rounds later, is loaded into
 * those VMs in place. The guests must finish exactly as an un-updated run, and
 * a record whose resident part changed must be turned away untouched.
 */
const MiB = 1024 * 1024;
let uptick: string;

beforeAll(async () => {
  uptick = (await buildImages({ quiet: true })).guests['uptick']!;
});

const guests = (vcpus: number[]): { path: string; memBytes: number; vcpus: number; cmdline: string }[] =>
  vcpus.map((n, i) => ({ path: uptick, memBytes: 16 * MiB, vcpus: n, cmdline: `rounds=8 period=5 kib=${256 + 128 * i}` }));

/** Records the hypervisor when the first VM has printed `round 2`, then again at `round 3` (the old process's rehearsal and its pause). */
async function recordTwice(g: GuestMachine): Promise<[StateRecord, StateRecord, string[]]> {
  const vm = g.vms[0]!;
  let want = 'round 2 ';
  vm.onSerial = () => {
    if (want && vm.serial.includes(want)) {
      want = '';
      g.machine.pauseAfterRound();
    }
  };
  const running = g.machine.run({ timeoutMs: 300_000 });
  const paused = async (): Promise<void> => {
    while (!g.machine.paused && !g.machine.exit) await new Promise((r) => setTimeout(r, 2));
    expect(g.machine.exit).toBeNull();
  };
  await paused();
  const rehearsal = encodeSnapshot(saveLiveState(g.hypervisor, g.shape!));
  want = 'round 3 ';
  g.machine.resume();
  await paused();
  const final = saveLiveState(g.hypervisor, g.shape!);
  const serials = g.vms.map((v) => v.serial);
  g.machine.stop('handed over');
  await running;
  return [decodeSnapshot(rehearsal), decodeSnapshot(encodeSnapshot(final)), serials];
}

function translations(vms: readonly Vm[]): (bigint | null)[] {
  return vms.flatMap((vm) => [0, 0x1000, 0x100000, 0x800000, vm.vmMemory.ramBytes - 0x1000].map((gpa) => vm.vmMemory.secondLevel.translate(BigInt(gpa), 'read')?.hpa ?? null));
}

describe('live update: the final record loaded into the rehearsal adoption', () => {
  it('an SMP VM and a second VM continue exactly as an un-updated run', async () => {
    const ref = createGuestMachine(guests([2, 1]), { pcpus: 1, pace: 'virtual' });
    const refExit = await ref.machine.run({ timeoutMs: 300_000 });
    const refSerials = ref.vms.map((v) => v.serial);
    const refAt = ref.vms.map((v) => v.exit?.atNs ?? -1);
    ref.hypervisor.close();
    ref.machine.close();
    expect(refSerials[0]).toContain('uptick: done');

    const old = createGuestMachine(guests([2, 1]), { pcpus: 1, pace: 'virtual', sharedRam: true });
    const [rehearsal, final, serialsAtPause] = await recordTwice(old);
    const before = translations(old.vms);
    expect(serialsAtPause[0]).toContain('round 3 ');
    old.machine.close();

    const ram = SharedRam.adopt(openSync(`/proc/self/fd/${old.sharedRam!.fd}`, 'r+'), old.shape!.hostBytes);
    const machine = guestHostMachine(old.shape!, ram.bytes);
    try {
      const adopted = adoptLiveState(rehearsal, machine);
      // The rehearsal VMs are at round 2; the final record moves them to round 3 without building anything.
      expect(adopted.vms[0]!.serial).not.toContain('round 3 ');
      expect(residentChange(rehearsal, final)).toBeNull();
      expect(adoptOver(rehearsal, adopted, final, machine)).toEqual({ ok: true });
      expect(adopted.vms.map((v) => v.serial)).toEqual(serialsAtPause);
      expect(translations(adopted.vms)).toEqual(before);
      finishWithFirstVm(machine, adopted.hypervisor, adopted.vms);
      const exit = await machine.run({ timeoutMs: 300_000 });
      expect(adopted.vms.map((v) => v.serial)).toEqual(refSerials);
      expect(exit.code).toBe(refExit.code);
      expect(adopted.vms.map((v) => v.exit?.atNs ?? -1)).toEqual(refAt);
    } finally {
      machine.close();
      ram.close();
      old.sharedRam!.close();
    }
  }, 600_000);

  it('turns a record whose resident part changed away, changing nothing', async () => {
    const old = createGuestMachine(guests([1]), { pcpus: 1, pace: 'virtual', sharedRam: true });
    const [rehearsal, final] = await recordTwice(old);
    old.machine.close();
    const ram = SharedRam.adopt(openSync(`/proc/self/fd/${old.sharedRam!.fd}`, 'r+'), old.shape!.hostBytes);
    const machine = guestHostMachine(old.shape!, ram.bytes);
    try {
      const adopted = adoptLiveState(rehearsal, machine);
      const serial = adopted.vms[0]!.serial;
      const vms = final['vms'] as StateRecord[];
      const mem = vms[0]!['memory'] as StateRecord;
      // A frame the guest took between the rehearsal and the pause: another held list.
      const moved = { ...final, vms: [{ ...vms[0]!, memory: { ...mem, held: [...(mem['held'] as number[]), 0xf00000, 0x1234000, 4096] } }] };
      expect(adoptOver(rehearsal, adopted, moved, machine)).toEqual({ ok: false, why: 'vms[0].memory changed since the rehearsal' });
      const host = final['hostMemory'] as StateRecord;
      expect(adoptOver(rehearsal, adopted, { ...final, hostMemory: { ...host, refs: [] } }, machine)).toEqual({ ok: false, why: 'hostMemory changed since the rehearsal' });
      expect(adoptOver(rehearsal, adopted, { ...final, vms: [] }, machine)).toEqual({ ok: false, why: 'vms changed since the rehearsal' });
      expect(adopted.vms[0]!.serial).toBe(serial);
    } finally {
      machine.close();
      ram.close();
      old.sharedRam!.close();
    }
  }, 600_000);
});
