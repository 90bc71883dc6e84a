/**
 * Unicorn's TLB grows for a guest whose working set is larger than it: QEMU's TLB starts at 256
 * entries and doubles only at a flush, so a guest that never flushes would miss it on every new
 * page forever, each miss a walk of the guest's tables and the EPT. NativeTlb.growIfThrashing
 * flushes between slices while the misses pile up. The guest must see exactly the same run, and
 * a guest that fits in the TLB is never flushed for it.
 */
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createGuestMachine } from '../../vmm/run-guests.js';

const guest = (name: string) => path.resolve(import.meta.dirname, `../../images/build/guests/${name}.elf`);

async function run(name: string, cmdline: string, grow: boolean): Promise<{ serial: string; code: number; misses: number; flushes: number }> {
  process.env['FIRMAMENT_TLB_GROW'] = grow ? '1' : '0';
  const { machine, hypervisor, vms } = createGuestMachine([{ path: guest(name), memBytes: 64 << 20, vcpus: 1, cmdline }], { pcpus: 1, pace: 'virtual' });
  try {
    const exit = await machine.run({ timeoutMs: 300_000 });
    const tlb = machine.hostCpus[0]!.nativeTlb;
    const c = tlb.counts();
    return { serial: vms[0]!.serial, code: exit.code, misses: c.native + c.js, flushes: tlb.growthFlushes };
  } finally {
    hypervisor.close();
    machine.close();
  }
}

describe('TLB growth for large working sets', () => {
  afterEach(() => {
    delete process.env['FIRMAMENT_TLB_GROW'];
  });

  it('the sieve over 4 MiB (1024 pages, four times the starting TLB) misses far less, with the same result', async () => {
    const fixed = await run('sieve', 'mib=4 passes=3', false);
    const grown = await run('sieve', 'mib=4 passes=3', true);
    expect(fixed.serial).toContain('sieve: 4 MiB, 3 passes');
    expect(grown.serial).toBe(fixed.serial);
    expect(grown.code).toBe(fixed.code);
    expect(fixed.flushes).toBe(0);
    expect(grown.flushes).toBeGreaterThan(0);
    // Bounded: at most one doubling per flush from 256 to the cap of 64 Ki entries.
    expect(grown.flushes).toBeLessThanOrEqual(8);
    expect(grown.misses * 4).toBeLessThan(fixed.misses);
  }, 300_000);

  it('a guest whose pages fit in the TLB is never flushed for growth', async () => {
    const r = await run('compute', 'rounds=16', true);
    expect(r.serial).toContain('compute:');
    expect(r.flushes).toBe(0);
  }, 120_000);
});
