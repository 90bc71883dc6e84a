import { describe, expect, it } from 'vitest';
import { buildImages } from '../../tools/build-images.mjs';
import { createGuestMachine } from '../../vmm/run-guests.js';

const MiB = 1024 * 1024;

/**
 * Exact dirty logging: a guest rewriting the same 1 MiB four times must show
 * those pages dirty after every pass, not only the first (the engines' TLBs
 * must lose their write permission when the log is harvested).
 */
describe('exact dirty logging', () => {
  it('the same pages rewritten N times between harvests are dirty every round', async () => {
    const guest = (await buildImages({ quiet: true })).guests['dirtier']!;
    const g = createGuestMachine([{ path: guest, memBytes: 64 * MiB, vcpus: 1, cmdline: 'mib=1 passes=4' }], { pcpus: 1, pace: 'virtual' });
    const vm = g.vms[0]!;
    const mem = vm.vmMemory;
    try {
      mem.startDirtyLog();
      // 2 MiB leaves are split while logging is on.
      for (const m of mem.ept.mappings(0, mem.ramBytes)) expect(m.size).toBe(4096);
      let passes = 0;
      // pause() stops at the next block, so each harvest sits right at a pass boundary.
      vm.onSerial = () => {
        const n = (vm.serial.match(/pass \d+\/4 done/g) ?? []).length;
        if (n > passes) {
          passes = n;
          g.machine.pause();
        }
      };
      const rounds: Set<number>[] = [];
      const running = g.machine.run({ timeoutMs: 120_000 });
      for (let round = 0; round < 4; round++) {
        while (!g.machine.paused && !g.machine.exit) await new Promise((r) => setTimeout(r, 2));
        if (g.machine.exit) break;
        rounds.push(new Set(mem.harvestDirty()));
        g.machine.resume();
      }
      await running;
      expect(vm.serial).toContain('dirtier: wrote 4 MiB in total');
      expect(rounds).toHaveLength(4);
      // Each pass rewrites the same 1 MiB (256 pages); the harvest is taken at the next block after
      // the pass's line is printed. Before the shootdown, rounds 2-4 saw nothing.
      for (const r of rounds) expect(r.size).toBeGreaterThanOrEqual(256);
      const common = [...rounds[0]!].filter((p) => rounds[1]!.has(p) && rounds[2]!.has(p) && rounds[3]!.has(p));
      expect(common.length).toBeGreaterThanOrEqual(256);
      mem.stopDirtyLog();
      expect(mem.dirtyLogging).toBe(false);
    } finally {
      g.hypervisor.close();
      g.machine.close();
    }
  });

  it('two readers of the log each see every page: one harvesting first takes nothing from the other', async () => {
    const guest = (await buildImages({ quiet: true })).guests['dirtier']!;
    const g = createGuestMachine([{ path: guest, memBytes: 64 * MiB, vcpus: 1, cmdline: 'mib=1 passes=1' }], { pcpus: 1, pace: 'virtual' });
    const mem = g.vms[0]!.vmMemory;
    const observer = { reader: 'observer' };
    const migration = { reader: 'migration' };
    try {
      mem.startDirtyLog(observer);
      mem.startDirtyLog(migration);
      await g.machine.run({ timeoutMs: 120_000 });
      const seenByObserver = new Set(mem.harvestDirty(observer));
      expect(seenByObserver.size).toBeGreaterThanOrEqual(256);
      // The observer's harvest cleared the D bits; the migration still gets all of those pages.
      const seenByMigration = new Set(mem.harvestDirty(migration));
      for (const p of seenByObserver) expect(seenByMigration.has(p)).toBe(true);
      // And nothing twice: both are now up to date.
      expect(mem.harvestDirty(migration)).toEqual([]);
      mem.stopDirtyLog(observer);
      expect(mem.dirtyLogging).toBe(true);
      mem.stopDirtyLog(migration);
      expect(mem.dirtyLogging).toBe(false);
      expect(() => mem.harvestDirty(migration)).toThrow(/not on/);
    } finally {
      g.hypervisor.close();
      g.machine.close();
    }
  });

  it('a lone sampling reader gets a lower bound; a reader joining later still sees every rewrite, and sampling beside it is exact', async () => {
    const guest = (await buildImages({ quiet: true })).guests['dirtier']!;
    const g = createGuestMachine([{ path: guest, memBytes: 64 * MiB, vcpus: 1, cmdline: 'mib=1 passes=4' }], { pcpus: 1, pace: 'virtual' });
    const vm = g.vms[0]!;
    const mem = vm.vmMemory;
    const observer = { reader: 'observer' };
    const migration = { reader: 'migration' };
    try {
      mem.startDirtyLog(observer);
      let passes = 0;
      vm.onSerial = () => {
        const n = (vm.serial.match(/pass \d+\/4 done/g) ?? []).length;
        if (n > passes) {
          passes = n;
          g.machine.pause();
        }
      };
      const running = g.machine.run({ timeoutMs: 120_000 });
      const pass = async (): Promise<void> => {
        while (!g.machine.paused && !g.machine.exit) await new Promise((r) => setTimeout(r, 2));
      };
      await pass();
      // Pass 1 writes 256 pages the engine had never held writable: all seen.
      expect(mem.sampleDirty(observer).length).toBeGreaterThanOrEqual(256);
      g.machine.resume();
      await pass();
      // Pass 2 rewrites them; the sample shot nothing down, so pages still writable in the TLB went unseen.
      expect(mem.sampleDirty(observer).length).toBeLessThan(256);
      // A migration joins: it must see every page written from now on, TLB or not.
      mem.startDirtyLog(migration);
      g.machine.resume();
      await pass();
      const third = new Set(mem.harvestDirty(migration));
      expect(third.size).toBeGreaterThanOrEqual(256);
      g.machine.resume();
      await pass();
      // With another reader on the log, a sample is an exact harvest, and hands the migration its pages.
      const fourth = mem.sampleDirty(observer);
      expect(fourth.length).toBeGreaterThanOrEqual(256);
      const forMigration = new Set(mem.harvestDirty(migration));
      for (const p of fourth) expect(forMigration.has(p)).toBe(true);
      g.machine.resume();
      await running;
      expect(vm.serial).toContain('dirtier: wrote 4 MiB in total');
    } finally {
      g.hypervisor.close();
      g.machine.close();
    }
  });
});
