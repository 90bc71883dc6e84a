import { describe, expect, it } from 'vitest';
import { createGuestMachine } from '../../vmm/run-guests.js';
import { translateForVcpu } from '../../hypervisor/translate.js';
import { buildImages } from '../../tools/build-images.mjs';

const MiB = 1024 * 1024;
const HIGH_HALF_VAR = 0xffff_ffff_8011_0000n; // the paging guest's fixed high-half variable (docs/guests.md)

/** An independent reference: raw 8-byte reads of host RAM, no code shared with the walkers under test. */
function referenceWalk(ram: DataView, eptp: bigint, cr3: bigint, gva: bigint) {
  const u64 = (hpa: bigint): bigint => ram.getBigUint64(Number(hpa), true);
  const eptTranslate = (gpa: bigint): { hpa: bigint; entries: bigint[] } => {
    let table = eptp & ~0xfffn;
    const entries: bigint[] = [];
    for (const shift of [39n, 30n, 21n, 12n]) {
      const e = u64(table + ((gpa >> shift) & 0x1ffn) * 8n);
      entries.push(e);
      if ((e & 7n) === 0n) throw new Error(`EPT hole at GPA 0x${gpa.toString(16)}`);
      const base = e & 0x000f_ffff_ffff_f000n;
      if (shift === 12n || (e & 0x80n) !== 0n) {
        const size = 1n << shift;
        return { hpa: (base & ~(size - 1n)) + (gpa & (size - 1n)), entries };
      }
      table = base;
    }
    throw new Error('unreachable');
  };
  const guest: { gpa: bigint; hpa: bigint; entry: bigint }[] = [];
  let table = cr3 & ~0xfffn;
  for (const shift of [39n, 30n, 21n, 12n]) {
    const gpa = table + ((gva >> shift) & 0x1ffn) * 8n;
    const hpa = eptTranslate(gpa).hpa;
    const entry = u64(hpa);
    guest.push({ gpa, hpa, entry });
    table = entry & 0x000f_ffff_ffff_f000n;
    if (shift !== 12n && (entry & 0x80n) !== 0n) throw new Error('large guest page: not expected here');
  }
  const gpa = table + (gva & 0xfffn);
  const final = eptTranslate(gpa);
  return { guest, gpa, hpa: final.hpa, eptEntries: final.entries };
}

describe('translate: GVA -> GPA -> HPA', () => {
  it('walks the paging guest high-half variable exactly like a reference walk over raw memory', async () => {
    const images = (await buildImages({ quiet: true })).guests;
    const { machine, hypervisor, vms } = createGuestMachine([{ path: images['paging']!, memBytes: 64 * MiB, vcpus: 1 }], { pcpus: 1, pace: 'virtual' });
    try {
      await machine.run({ timeoutMs: 60_000 });
      const vcpu = vms[0]!.vcpus[0]!;
      const t = translateForVcpu(vcpu, HIGH_HALF_VAR);
      expect(t.ok).toBe(true);
      const ram = new DataView(machine.memory.ram.buffer);
      const ref = referenceWalk(ram, vms[0]!.vmMemory.ept.eptp(), vcpu.cpu.readControl().cr3, HIGH_HALF_VAR);
      expect(t.guestSteps.map((s) => [s.level, BigInt(s.entryAddr), s.entry])).toEqual(
        ref.guest.map((g, i) => [['PML4', 'PDPT', 'PD', 'PT'][i], g.gpa, g.entry]),
      );
      expect(t.guestSteps.map((s) => s.index)).toEqual([511, 510, 0, 272]);
      const reads = t.tableAccesses.filter((a) => a.op === 'read').map((a) => (a.ept.ok ? a.ept.hpa : null));
      expect(reads).toEqual(ref.guest.map((g) => g.hpa));
      expect(t.gpa).toBe(ref.gpa);
      expect(t.gpa).toBe(0x110000n);
      expect(t.hpa).toBe(ref.hpa);
      expect(t.final!.ok && t.final!.steps.map((s) => s.entry)).toEqual(ref.eptEntries);
      // The variable's value through that HPA is what the guest printed.
      expect(ram.getBigUint64(Number(t.hpa), true)).toBe(0x4649524d414d454en);
    } finally {
      hypervisor.close();
      machine.close();
    }
  });
});
