import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createGuestMachine, restoreGuestMachine, type GuestMachine } from '../../vmm/run-guests.js';
import { SnapshotStore } from '../../vmm/snapshot/index.js';
import { buildImages } from '../../tools/build-images.mjs';
import { StateError } from '../../machine/state.js';
import type { VmImage } from '../../hypervisor/hypervisor.js';

/**
 * A VM saved mid-run into the snapshot store and restored into a new machine
 * continues exactly where it was: the joined console equals an uninterrupted
 * run's, and it exits with the same status at the same virtual nanosecond.
 */
interface GoldenCase {
  guest: string;
  append?: string;
  smp?: number;
  cpu?: string;
}
const MANIFEST = JSON.parse(readFileSync(join(import.meta.dirname, '../guests/expected/cases.json'), 'utf8')) as { cases: GoldenCase[] };
const CASES = MANIFEST.cases.filter((c) => c.cpu === undefined && !(c.append ?? '').includes('mib=100'));
const MiB = 1024 * 1024;
let images: Record<string, string>;
let storeDir: string;

async function runToEnd(g: GuestMachine): Promise<{ serial: string; code: number; atNs: number }> {
  try {
    const exit = await g.machine.run({ timeoutMs: 120_000 });
    return { serial: g.vms[0]!.serial, code: exit.code, atNs: g.vms[0]!.exit?.atNs ?? -1 };
  } finally {
    g.hypervisor.close();
    g.machine.close();
  }
}

/**
 * Runs until the VM has printed `bytes` bytes, pauses at the end of that
 * scheduling round, takes a snapshot and ends the machine. (A pause never cuts
 * a slice short, so the run up to there is the reference run's.)
 */
async function snapshotAt(g: GuestMachine, bytes: number, atNs?: number): Promise<VmImage> {
  const vm = g.vms[0]!;
  vm.onSerial = () => {
    if (vm.serial.length >= bytes) g.machine.pauseAfterRound();
  };
  // A guest that prints everything in one round is stopped by a timer instead (an extra slice boundary).
  if (atNs !== undefined) g.machine.timeline.schedule(atNs, () => g.machine.pause());
  const running = g.machine.run({ timeoutMs: 120_000 });
  while (!g.machine.paused && !g.machine.exit) await new Promise((r) => setTimeout(r, 2));
  expect(g.machine.exit).toBeNull();
  const image = g.hypervisor.snapshotVm(g.vms[0]!);
  g.machine.stop('snapshot taken');
  await running;
  g.hypervisor.close();
  g.machine.close();
  return image;
}

describe('VM snapshot mid-run, restored into a new machine', () => {
  beforeAll(async () => {
    images = (await buildImages({ quiet: true })).guests;
    storeDir = mkdtempSync(join(tmpdir(), 'fm-vmsnap-'));
  });
  afterAll(() => rmSync(storeDir, { recursive: true, force: true }));

  for (const c of CASES) {
    const label = `${c.guest}${c.append ? ` (${c.append})` : ''}${c.smp ? ` with ${c.smp} vCPUs` : ''}`;
    it(label, async () => {
      const spec = [{ path: images[c.guest]!, memBytes: 64 * MiB, vcpus: c.smp ?? 1, ...(c.append ? { cmdline: c.append } : {}) }];
      const opts = { pcpus: 1, pace: 'virtual' as const };
      const ref = await runToEnd(createGuestMachine(spec, opts));
      expect(ref.atNs).toBeGreaterThan(0);
      const quick = c.guest === 'hello';
      const image = await snapshotAt(createGuestMachine(spec, opts), quick ? Infinity : Math.ceil(ref.serial.length / 2), quick ? Math.floor(ref.atNs / 2) : undefined);
      const before = image.state['serial'] as string;
      expect(ref.serial.startsWith(before)).toBe(true);

      const store = SnapshotStore.open(storeDir);
      const ref_ = `${c.guest}-${c.smp ?? 1}-${(c.append ?? 'default').replace(/[^a-z0-9]+/gi, '-')}`;
      await store.save(ref_, { state: image.state, memory: image.memory });
      const loaded = await store.load(ref_);

      // The raw context (same build) and the portable record (any build) must both continue the run exactly.
      for (const portable of [false, true]) {
        const restored = restoreGuestMachine({ state: loaded.state, memory: loaded.memory }, { ...opts, portable });
        expect(restored.vms[0]!.serial).toBe(before);
        const end = await runToEnd(restored);
        expect(end.serial).toBe(ref.serial);
        expect(end.code).toBe(ref.code);
        expect(end.atNs).toBe(ref.atNs);
      }
    });
  }

  it('lazy population: pages are filled on first touch (EPT violations counted) and the run still ends the same', async () => {
    const spec = [{ path: images['dirtier']!, memBytes: 64 * MiB, vcpus: 1, cmdline: 'mib=8 passes=3' }];
    const opts = { pcpus: 1, pace: 'virtual' as const };
    const ref = await runToEnd(createGuestMachine(spec, opts));
    const image = await snapshotAt(createGuestMachine(spec, opts), Math.ceil(ref.serial.length / 3));
    const lazy = restoreGuestMachine(image, { ...opts, populate: 'lazy' });
    const memStats = lazy.vms[0]!.vmMemory.stats();
    expect(memStats.unpopulatedBytes).toBe(64 * MiB);
    const mem = lazy.vms[0]!.vmMemory;
    const end = await runToEndKeeping(lazy, () => mem.stats());
    // Same console and exit; virtual time follows executed code, and a faulting block is re-entered, so lazy runs end a little later.
    expect(end.serial).toBe(ref.serial);
    expect(end.code).toBe(ref.code);
    expect(end.stats.lazyFaults).toBeGreaterThan(0);
    expect(end.stats.eptViolations).toBeGreaterThanOrEqual(end.stats.lazyFaults);
    expect(end.stats.unpopulatedBytes).toBeGreaterThan(0);
  });

  it('a linked clone keeps its clone index (guest-visible) through save and restore; older records without one load as no clone', () => {
    const g = createGuestMachine([{ path: images['hello']!, memBytes: 64 * MiB, vcpus: 1 }], { pcpus: 1, pace: 'virtual', extraHostBytes: 192 * MiB });
    try {
      g.vms[0]!.cloneIndex = 7;
      const image = g.hypervisor.snapshotVm(g.vms[0]!);
      expect(image.state['cloneIndex']).toBe(7);
      expect(g.hypervisor.restoreVm(image.state, { ranges: image.memory }, { name: 'again' }).cloneIndex).toBe(7);
      const { cloneIndex: _dropped, ...older } = image.state;
      expect(g.hypervisor.restoreVm(older as VmImage['state'], { ranges: image.memory }, { name: 'older' }).cloneIndex).toBeNull();
    } finally {
      g.hypervisor.close();
      g.machine.close();
    }
  });

  it('the gateway saved mid-run keeps its COM2 transcript (telemetry frames) through save and restore', async () => {
    const spec = [{ path: images['gateway']!, memBytes: 16 * MiB, vcpus: 1 }];
    const g = createGuestMachine(spec, { pcpus: 1, pace: 'virtual' });
    const vm = g.vms[0]!;
    vm.onCom2 = () => g.machine.pauseAfterRound();
    const running = g.machine.run({ timeoutMs: 120_000 });
    while (!g.machine.paused && !g.machine.exit) await new Promise((r) => setTimeout(r, 2));
    const image = g.hypervisor.snapshotVm(vm);
    const com2 = vm.com2Serial;
    g.machine.stop('snapshot taken');
    await running;
    g.hypervisor.close();
    g.machine.close();
    expect(com2.length).toBeGreaterThan(0);
    const r = restoreGuestMachine(image, { pcpus: 1, pace: 'virtual' });
    try {
      expect(r.vms[0]!.com2Serial).toBe(com2);
    } finally {
      r.hypervisor.close();
      r.machine.close();
    }
  });

  it('refuses records that do not fit, naming the field, and leaves the hypervisor as it was', async () => {
    const spec = [{ path: images['hello']!, memBytes: 64 * MiB, vcpus: 1 }];
    const g = createGuestMachine(spec, { pcpus: 1, pace: 'virtual', extraHostBytes: 64 * MiB });
    try {
      const image = g.hypervisor.snapshotVm(g.vms[0]!);
      const used = g.hypervisor.host.allocator.usedFrames;
      const bad = (patch: Record<string, unknown>): VmImage => ({ state: { ...image.state, ...patch } as VmImage['state'], memory: image.memory });
      expect(() => g.hypervisor.restoreVm(bad({ clockNs: 2 ** 60 }).state, { ranges: image.memory })).toThrow(/clockNs/);
      expect(() => g.hypervisor.restoreVm(bad({ version: 99 }).state, { ranges: image.memory })).toThrow(StateError);
      expect(() => g.hypervisor.restoreVm(bad({ vcpus: 0 }).state, { ranges: image.memory })).toThrow(/vcpus/);
      expect(() => g.hypervisor.restoreVm(bad({ cpus: [] }).state, { ranges: image.memory })).toThrow(/cpus/);
      expect(() => g.hypervisor.restoreVm(image.state, { ranges: [{ gpa: 64 * MiB, bytes: new Uint8Array(4096) }] })).toThrow(/memory\[0\]/);
      const cpu0 = (image.state['cpus'] as Record<string, unknown>[])[0]!;
      const badCpu = { ...cpu0, portable: { ...(cpu0['portable'] as object), regs: { RIP: 'zz' } } };
      expect(() => g.hypervisor.restoreVm({ ...image.state, cpus: [badCpu] }, { ranges: image.memory }, { portable: true })).toThrow(/regs/);
      expect(() => g.hypervisor.restoreVm(bad({ cloneIndex: -2 }).state, { ranges: image.memory })).toThrow(/cloneIndex/);
      expect(g.hypervisor.vms).toHaveLength(1);
      expect(g.hypervisor.host.allocator.usedFrames).toBe(used);
    } finally {
      g.hypervisor.close();
      g.machine.close();
    }
  });
});

async function runToEndKeeping<T>(g: GuestMachine, probe: () => T): Promise<{ serial: string; code: number; atNs: number; stats: T }> {
  try {
    const exit = await g.machine.run({ timeoutMs: 120_000 });
    return { serial: g.vms[0]!.serial, code: exit.code, atNs: g.vms[0]!.exit?.atNs ?? -1, stats: probe() };
  } finally {
    g.hypervisor.close();
    g.machine.close();
  }
}
