import { describe, expect, it } from 'vitest';
import { createGuestMachine } from '../../vmm/run-guests.js';
import { translateForVcpu } from '../../hypervisor/translate.js';
import { pageWalkView } from '../../machine/inspect/page-walk-view.js';
import { buildImages } from '../../tools/build-images.mjs';

describe('page-walk view of a hypervisor guest', () => {
  it('shows the guest levels with guest-physical addresses and the EPT levels to the host-physical page', async () => {
    const images = (await buildImages({ quiet: true })).guests;
    const { machine, hypervisor, vms } = createGuestMachine([{ path: images['paging']!, memBytes: 64 * 1024 * 1024, vcpus: 1 }], { pcpus: 1, pace: 'virtual' });
    try {
      await machine.run({ timeoutMs: 60_000 });
      const vcpu = vms[0]!.vcpus[0]!;
      const gva = 0xffff_ffff_8011_0000n;
      const view = pageWalkView(vcpu.cpu, gva);
      const ref = translateForVcpu(vcpu, gva);
      expect(view.levels.map((l) => l.level)).toEqual(['PML4', 'PDPT', 'PD', 'PT']);
      expect(view.result).toMatchObject({ ok: true, physical: '0x0000000000110000' });
      expect(view.ept).not.toBeNull();
      expect(view.ept!.guestPhysical).toBe('0x0000000000110000');
      expect(BigInt(view.ept!.hostPhysical!)).toBe(ref.hpa);
      expect(view.ept!.levels.map((l) => l.level)).toEqual(ref.final!.steps.map((s) => s.level));
      expect(view.ept!.levels.at(-1)!.flagText).toMatch(/^R W X WB.*PS/);
    } finally {
      hypervisor.close();
      machine.close();
    }
  });
});
