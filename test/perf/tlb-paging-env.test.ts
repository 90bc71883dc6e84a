/**
 * The native TLB fill reads CR0, CR3, CR4, EFER and the CS selector straight from QEMU's env at
 * offsets found by a probe (native-tlb.ts pagingEnvLayout), instead of five uc_reg_read calls per
 * miss. What it reads must be what the registers hold, on a guest that runs with paging under EPT.
 */
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { createGuestMachine } from '../../vmm/run-guests.js';
import { pagingEnvLayout } from '../../machine/cpu/native-tlb.js';
import { REG } from '../../machine/cpu/unicorn/constants.js';

const COMPUTE = path.resolve(import.meta.dirname, '../../images/build/guests/compute.elf');

describe('native TLB fill: control registers from env', () => {
  it('this Unicorn build has a verified layout (the fast path is on)', () => {
    const layout = pagingEnvLayout();
    expect(typeof layout).toBe('object');
  });

  it('reads the same CR0/CR3/CR4/EFER/CS as uc_reg_read after a 64-bit paged guest ran', async () => {
    const { machine, hypervisor, vms } = createGuestMachine([{ path: COMPUTE, memBytes: 32 << 20, vcpus: 1, cmdline: 'rounds=4' }], { pcpus: 1, pace: 'virtual' });
    try {
      // Stop mid-run, with the vCPU still bound to its engine.
      let steps = 0;
      while (steps++ < 5 && !machine.exit) machine.step();
      const host = machine.hostCpus[0]!;
      const e = host.engine;
      const [cr0, cr3, cr4, efer, cs] = host.nativeTlb.pagingState(e);
      expect(cr0! & 0x8000_0000n).toBe(0x8000_0000n); // paging on: a state worth comparing
      expect(cr0).toBe(e.readReg(REG.CR0));
      expect(cr3).toBe(e.readReg(REG.CR3));
      expect(cr4).toBe(e.readReg(REG.CR4));
      expect(efer).toBe(e.readMsr(0xc000_0080));
      expect(cs).toBe(e.readReg(REG.CS) & 0xffffn);
      expect(vms[0]!.serial).toContain('compute:');
    } finally {
      hypervisor.close();
      machine.close();
    }
  }, 120_000);
});
