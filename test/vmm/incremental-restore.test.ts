import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createGuestMachine, restoreGuestMachine, type GuestMachine } from '../../vmm/run-guests.js';
import { SnapshotStore, CHUNK_SIZE, type MemoryRange } from '../../vmm/snapshot/index.js';
import { restoreIncrementally, saveVmSnapshot, snapshotBaseOf } from '../../vmm/incremental-restore.js';
import { buildImages } from '../../tools/build-images.mjs';
import type { Vm } from '../../hypervisor/vm.js';

/**
 * A running VM brought back to an earlier snapshot P moves only the chunks
 * that differ (at most 1.1x the true difference), ends up with exactly P's
 * memory, and runs on exactly as a fresh restore of P does.
 */
const MiB = 1024 * 1024;
const SPEC = (images: Record<string, string>) => [{ path: images['dirtier']!, memBytes: 64 * MiB, vcpus: 1, cmdline: 'mib=8 passes=4' }];
const OPTS = { pcpus: 1, pace: 'virtual' as const };
let images: Record<string, string>;
let storeDir: string;
let store: SnapshotStore;

/** A machine driven in steps: run until the console satisfies `until`, pause between rounds. */
class Stepper {
  private running: Promise<unknown> | null = null;
  constructor(readonly g: GuestMachine) {}
  get vm(): Vm {
    return this.g.vms[0]!;
  }
  async runUntil(until: (serial: string) => boolean): Promise<void> {
    const { machine } = this.g;
    this.vm.onSerial = () => {
      if (until(this.vm.serial)) machine.pauseAfterRound();
    };
    if (this.running) machine.resume();
    else this.running = machine.run({ timeoutMs: 120_000 });
    while (!machine.paused && !machine.exit) await new Promise((r) => setTimeout(r, 2));
    expect(machine.exit).toBeNull();
  }
  async finish(): Promise<{ serial: string; code: number; atNs: number }> {
    this.vm.onSerial = undefined;
    if (this.running) this.g.machine.resume();
    await (this.running ?? this.g.machine.run({ timeoutMs: 120_000 }));
    const out = { serial: this.vm.serial, code: this.g.machine.exit!.code, atNs: this.vm.exit?.atNs ?? -1 };
    this.close();
    return out;
  }
  private closed = false;
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.g.hypervisor.close();
    this.g.machine.close();
  }
}

/** The whole guest RAM as one array (unpopulated pages zero). */
function ramImage(ranges: Iterable<MemoryRange>, ramBytes: number): Uint8Array {
  const ram = new Uint8Array(ramBytes);
  for (const r of ranges) ram.set(r.bytes, r.gpa);
  return ram;
}

/** Bytes of the 64 KiB chunks in which two RAM images differ. */
function trueDifference(a: Uint8Array, b: Uint8Array): number {
  let n = 0;
  for (let off = 0; off < a.length; off += CHUNK_SIZE) {
    const end = Math.min(a.length, off + CHUNK_SIZE);
    if (!Buffer.from(a.subarray(off, end)).equals(b.subarray(off, end))) n += end - off;
  }
  return n;
}

const passDone = (n: number) => (s: string) => s.includes(`pass ${n}/4 done`);

describe('incremental restore to an earlier snapshot', () => {
  let pRam: Uint8Array;
  let fresh: { serial: string; code: number; atNs: number };

  beforeAll(async () => {
    images = (await buildImages({ quiet: true })).guests;
    storeDir = mkdtempSync(join(tmpdir(), 'fm-increst-'));
    store = SnapshotStore.open(storeDir);
    // Snapshot P after the first pass, and what a plain restore of P does from there.
    const s = new Stepper(createGuestMachine(SPEC(images), OPTS));
    await s.runUntil(passDone(1));
    await saveVmSnapshot(s.g.hypervisor, s.vm, store, 'P');
    s.close();
    const p = await store.load('P');
    pRam = ramImage(p.memory, 64 * MiB);
    const plain = new Stepper(restoreGuestMachine({ state: p.state, memory: p.memory }, OPTS));
    fresh = await plain.finish();
    expect(fresh.serial).toContain('checksum');
    expect(fresh.code).toBe(1); // isa-debug-exit value 0, as QEMU reports it
  }, 300_000);
  afterAll(() => rmSync(storeDir, { recursive: true, force: true }));

  it('dirty-log method: the VM saved as P runs on, goes back to P moving <= 1.1x the true difference, and continues as a fresh restore of P', async () => {
    const s = new Stepper(createGuestMachine(SPEC(images), OPTS));
    try {
      await s.runUntil(passDone(1));
      await saveVmSnapshot(s.g.hypervisor, s.vm, store, 'P-again');
      expect(snapshotBaseOf(s.vm)?.ref).toBe('P-again');
      await s.runUntil(passDone(3));
      const now = ramImage(s.g.hypervisor.snapshotVm(s.vm).memory, 64 * MiB);
      const diff = trueDifference(now, pRam);
      expect(diff).toBeGreaterThanOrEqual(8 * MiB);

      // A snapshot of another shape is refused before anything changes, and the dirty log survives the refusal.
      const small = new Stepper(createGuestMachine([{ path: images['hello']!, memBytes: 32 * MiB, vcpus: 1 }], OPTS));
      await saveVmSnapshot(small.g.hypervisor, small.vm, store, 'small');
      small.close();
      await expect(restoreIncrementally(s.g.hypervisor, s.vm, store, 'small')).rejects.toThrow(/memBytes|RAM/);
      await expect(restoreIncrementally(s.g.hypervisor, s.vm, store, 'nope')).rejects.toThrow(/no snapshot 'nope'/);
      expect(Buffer.from(ramImage(s.g.hypervisor.snapshotVm(s.vm).memory, 64 * MiB)).equals(now)).toBe(true);

      const r = await restoreIncrementally(s.g.hypervisor, s.vm, store, 'P');
      expect(r.method).toBe('dirty-log');
      expect(r.fallback).toBeNull();
      expect(r.fullBytes).toBe(64 * MiB);
      expect(r.bytesMoved).toBeGreaterThanOrEqual(diff);
      expect(r.bytesMoved).toBeLessThanOrEqual(1.1 * diff);
      // Only what the dirty log reported was hashed, not the whole RAM.
      expect(r.chunksDirty).toBeGreaterThanOrEqual(r.chunksMoved);
      expect(r.bytesHashed).toBeLessThan(r.fullBytes / 2);
      expect(Buffer.from(ramImage(s.g.hypervisor.snapshotVm(s.vm).memory, 64 * MiB)).equals(pRam)).toBe(true);
      expect(s.vm.serial).toBe((await store.loadState('P'))['serial']);
      expect(snapshotBaseOf(s.vm)?.ref).toBe('P');

      const end = await s.finish();
      expect(end).toEqual(fresh);
    } finally {
      s.close();
    }
  }, 300_000);

  it('hash method: a VM that never held P (no base) goes back to P the same way', async () => {
    const s = new Stepper(createGuestMachine(SPEC(images), OPTS));
    try {
      await s.runUntil(passDone(2));
      expect(snapshotBaseOf(s.vm)).toBeNull();
      const now = ramImage(s.g.hypervisor.snapshotVm(s.vm).memory, 64 * MiB);
      const diff = trueDifference(now, pRam);
      expect(diff).toBeGreaterThanOrEqual(8 * MiB);
      const r = await restoreIncrementally(s.g.hypervisor, s.vm, store, 'P');
      expect(r.method).toBe('hash');
      expect(r.fallback).toMatch(/no base/);
      expect(r.bytesHashed).toBe(64 * MiB);
      expect(r.bytesMoved).toBeGreaterThanOrEqual(diff);
      expect(r.bytesMoved).toBeLessThanOrEqual(1.1 * diff);
      expect(Buffer.from(ramImage(s.g.hypervisor.snapshotVm(s.vm).memory, 64 * MiB)).equals(pRam)).toBe(true);

      // Now the VM is based on P: the same run and the same way back again, through the dirty log.
      await s.runUntil(passDone(2));
      const again = await restoreIncrementally(s.g.hypervisor, s.vm, store, 'P');
      expect(again.method).toBe('dirty-log');
      expect(again.bytesMoved).toBe(r.bytesMoved);
      const end = await s.finish();
      expect(end).toEqual(fresh);
    } finally {
      s.close();
    }
  }, 300_000);

  it('hash method on a lazily restored VM: pages not touched yet count with their snapshot contents, not as zeros', async () => {
    // H: a hello guest before it runs (almost all zero). Q: the dirtier after pass 3, restored lazily,
    // so its 8 MiB working set is only in the snapshot and must still be cleared to reach H.
    const h = new Stepper(createGuestMachine([{ path: images['hello']!, memBytes: 64 * MiB, vcpus: 1 }], OPTS));
    await saveVmSnapshot(h.g.hypervisor, h.vm, store, 'H', { track: false });
    h.close();
    const hData = await store.load('H');
    const hRam = ramImage(hData.memory, 64 * MiB);
    const freshH = await new Stepper(restoreGuestMachine({ state: hData.state, memory: hData.memory }, OPTS)).finish();
    const q = new Stepper(createGuestMachine(SPEC(images), OPTS));
    await q.runUntil(passDone(3));
    await saveVmSnapshot(q.g.hypervisor, q.vm, store, 'Q');
    q.close();
    const qData = await store.load('Q');
    const diff = trueDifference(ramImage(qData.memory, 64 * MiB), hRam);
    expect(diff).toBeGreaterThanOrEqual(8 * MiB);
    const s = new Stepper(restoreGuestMachine({ state: qData.state, memory: qData.memory }, { ...OPTS, populate: 'lazy' }));
    try {
      expect(s.vm.vmMemory.stats().unpopulatedBytes).toBe(64 * MiB);
      const r = await restoreIncrementally(s.g.hypervisor, s.vm, store, 'H');
      expect(r.method).toBe('hash');
      expect(r.bytesMoved).toBeGreaterThanOrEqual(diff);
      expect(r.bytesMoved).toBeLessThanOrEqual(1.1 * diff);
      // Every page as the guest would see it (populated from Q where untouched) is H's.
      s.vm.vmMemory.prepopulate(s.vm.vmMemory.ranges);
      expect(Buffer.from(ramImage(s.g.hypervisor.snapshotVm(s.vm).memory, 64 * MiB)).equals(hRam)).toBe(true);
      expect(await s.finish()).toEqual(freshH);
    } finally {
      s.close();
    }
  }, 300_000);
});
