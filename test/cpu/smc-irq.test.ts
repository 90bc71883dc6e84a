import { describe, expect, it } from 'vitest';
import { buildRom } from '../support/asm.js';
import { BareHost } from '../support/bare-host.js';
import type { MsrExitHandler } from '../../machine/cpu/x86-cpu.js';
import { newPermissionMap, VMCB_MSRPM_BASE_PA } from '../../machine/cpu/x86/msr-intercept.js';

const CONTROL_AREA = 0xf0_0000;
const PERMISSION_MAP = 0xf0_1000;
/** Nothing intercepted but what the map says: enough for SVM guest mode, where QEMU itself delivers interrupts (native-irq.ts). */
const passThrough: MsrExitHandler = { controlArea: () => CONTROL_AREA, read: () => undefined, write: () => false };

function host(asVcpu: boolean): BareHost {
  const rom = buildRom('smc-irq.S');
  if (!asVcpu) return new BareHost(rom);
  const h = new BareHost(rom, 16 * 1024 * 1024, { msrExits: passThrough });
  h.memory.writeBytes(PERMISSION_MAP, newPermissionMap([]));
  h.memory.writeU64(CONTROL_AREA + VMCB_MSRPM_BASE_PA, BigInt(PERMISSION_MAP));
  return h;
}

describe('self-modifying code under a fast timer (test/fixtures/smc-irq.S)', () => {
  for (const asVcpu of [false, true]) {
    it(`a call site patched between call and nop forms runs its current bytes, from the loop and from the handler (${asVcpu ? 'vCPU: QEMU delivers' : 'bare metal: delivery.ts'})`, () => {
      const h = host(asVcpu);
      expect(h.cpu.nativeInterrupts === true).toBe(asVcpu);
      let interrupts = 0;
      // A timer as fast as our slices: an interrupt is raised before every slice of 500 units.
      for (let i = 0; i < 200_000 && h.exitValue === null; i++) {
        if (h.irqVector === null) h.irqVector = 0x20;
        h.cpu.serviceInterrupts();
        if (h.irqVector === null) interrupts++;
        const ex = h.cpu.runSlice(500n);
        if (ex.kind === 'halted' || ex.kind === 'triple-fault' || ex.kind === 'error') break;
      }
      expect(h.console).toBe('.'.repeat(200) + 'P');
      expect(h.exitValue).toBe(0);
      expect(interrupts).toBeGreaterThan(200);
    });
  }
});
