/**
 * The ACPI tables every VM finds in RAM (hypervisor/acpi/): read back from the
 * VM's guest-physical memory the way an OS finds them, and compared field by
 * field with the tables QEMU 7.2's pc machine (-smp 2, -m 256, SeaBIOS) gave
 * Debian's kernel (test/fixtures/acpi/qemu-7.2-pc-smp2, saved with the
 * monitor's pmemsave). The differences allowed below are the deliberate ones
 * of docs/linux.md ("ACPI tables").
 */
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createGuestMachine } from '../../vmm/run-guests.js';
import { buildImages } from '../../tools/build-images.mjs';
import { parseAcpi, parseMadt, AcpiParseError, type AcpiHeader } from '../../hypervisor/acpi/parse.js';
import { buildAcpiTables } from '../../hypervisor/acpi/tables.js';
import { qemuPcMemoryMap } from '../../hypervisor/multiboot/index.js';

const MiB = 1024 * 1024;
const fixtures = resolve(import.meta.dirname, '../fixtures/acpi/qemu-7.2-pc-smp2');
const qemu = (name: string): Uint8Array => new Uint8Array(readFileSync(join(fixtures, `${name}.bin`)));

async function vmTables(vcpus: number, memBytes: number): Promise<ReturnType<typeof parseAcpi>> {
  const images = (await buildImages({ quiet: true })).guests;
  const { machine, hypervisor, vms } = createGuestMachine([{ path: images['hello']!, memBytes, vcpus }], { pcpus: 1, pace: 'virtual' });
  try {
    const mem = vms[0]!.vmMemory;
    return parseAcpi((gpa, len) => mem.read(gpa, len));
  } finally {
    hypervisor.close();
    machine.close();
  }
}

const byName = (p: ReturnType<typeof parseAcpi>, sig: string): AcpiHeader => {
  const t = p.tables.find((x) => x.signature === sig);
  if (!t) throw new Error(`no ${sig}`);
  return t;
};

/** Bytes of `a` and `b` that differ, outside the listed [from, to) ranges. */
function diffOutside(a: Uint8Array, b: Uint8Array, allowed: Array<[number, number]>): number[] {
  const out: number[] = [];
  for (let i = 0; i < Math.max(a.length, b.length); i++) if (a[i] !== b[i] && !allowed.some(([f, t]) => i >= f && i < t)) out.push(i);
  return out;
}
/** Header fields that name the vendor (OEM ID, table ID, creator) and the checksum that follows from them. */
const VENDOR: Array<[number, number]> = [
  [9, 10],
  [10, 24],
  [28, 32],
];

describe('ACPI tables in a VM', () => {
  it('a 2-vCPU VM has an RSDP in the BIOS area and valid RSDT, FADT, FACS, DSDT, MADT and WAET in the reserved top of RAM', async () => {
    const p = await vmTables(2, 256 * MiB);
    expect(p.rsdp).toMatchObject({ gpa: 0xf5a00, revision: 0, oemId: 'FIRMNT', xsdt: null });
    expect(p.tables.map((t) => t.signature)).toEqual(['RSDT', 'FACP', 'DSDT', 'FACS', 'APIC', 'WAET']);
    // All inside the range our e820 reserves for them, as SeaBIOS's high tables are.
    const reserved = qemuPcMemoryMap(256 * MiB).find((e) => Number(e.base) === 256 * MiB - 0x20000)!;
    expect(reserved.type).toBe(2);
    for (const t of p.tables) {
      expect(t.gpa).toBeGreaterThanOrEqual(256 * MiB - 0x20000);
      expect(t.gpa + t.length).toBeLessThanOrEqual(256 * MiB);
    }
    expect(byName(p, 'FACS').gpa % 64).toBe(0);
    const madt = parseMadt(byName(p, 'APIC'));
    expect(madt.lapicAddress).toBe(0xfee00000);
    expect(madt.flags).toBe(1);
    expect(madt.lapics).toEqual([
      { processorUid: 0, apicId: 0, flags: 1 },
      { processorUid: 1, apicId: 1, flags: 1 },
    ]);
    expect(madt.ioapics).toEqual([{ id: 0, address: 0xfec00000, gsiBase: 0 }]);
    expect(madt.overrides).toEqual([
      { bus: 0, source: 0, gsi: 2, flags: 0 },
      { bus: 0, source: 9, gsi: 9, flags: 0x0d },
    ]);
    expect(madt.lapicNmis).toEqual([{ processorUid: 0xff, flags: 0, lint: 1 }]);
    // \_S5 = Package (4) { 0, 0, 0, 0 }: PIIX4's soft-off SLP_TYP, as QEMU's DSDT.
    expect([...byName(p, 'DSDT').bytes.subarray(36)]).toEqual([0x08, 0x5f, 0x53, 0x35, 0x5f, 0x12, 0x06, 0x04, 0, 0, 0, 0]);
  });

  it('one LAPIC entry per vCPU', async () => {
    for (const n of [1, 4]) {
      const plan = buildAcpiTables({ vcpus: n, ramBytes: 64 * MiB });
      const mem = new Uint8Array(64 * MiB);
      for (const w of plan.writes) mem.set(w.bytes, w.gpa);
      const madt = parseMadt(byName(parseAcpi((gpa, len) => mem.slice(gpa, gpa + len)), 'APIC'));
      expect(madt.lapics.map((l) => l.apicId)).toEqual([...Array(n).keys()]);
    }
  });

  it('matches QEMU 7.2 pc field by field, except the documented differences', async () => {
    const p = await vmTables(2, 256 * MiB);
    const ours = (sig: string): Uint8Array => byName(p, sig).bytes;
    // RSDP: the same revision 0 layout; the address of the RSDT and the OEM ID differ.
    const ourRsdp = buildAcpiTables({ vcpus: 2, ramBytes: 256 * MiB }).writes.find((w) => w.gpa === p.rsdp.gpa)!.bytes;
    expect(diffOutside(ourRsdp, qemu('RSDP'), [[8, 9], [9, 15], [16, 20]])).toEqual([]);
    // FADT: same revision, length, PM ports, SCI, latencies, century and flags. Differences:
    // FACS/DSDT addresses (36-44) and SMI_CMD/ACPI_ENABLE/ACPI_DISABLE (48-54, we have no SMM).
    expect(diffOutside(ours('FACP'), qemu('FACP'), [...VENDOR, [36, 44], [48, 54]])).toEqual([]);
    expect(qemu('FACP')[48]).toBe(0xb2);
    expect(ours('FACP')[48]).toBe(0);
    // FACS: identical.
    expect([...ours('FACS')]).toEqual([...qemu('FACS')]);
    // WAET: identical but for the vendor fields.
    expect(diffOutside(ours('WAET'), qemu('WAET'), VENDOR)).toEqual([]);
    // MADT: QEMU's entries, less the interrupt source overrides of the PCI link IRQs 5, 10, 11 (no PCI here).
    const qm = parseMadt({ ...byName(p, 'APIC'), bytes: qemu('APIC'), length: qemu('APIC').length });
    const om = parseMadt(byName(p, 'APIC'));
    expect(om).toEqual({ ...qm, overrides: qm.overrides.filter((o) => ![5, 10, 11].includes(o.source)) });
    expect(diffOutside(ours('APIC').subarray(0, 8), qemu('APIC').subarray(0, 8), [[4, 8]])).toEqual([]);
    // RSDT: QEMU lists FACP, APIC, HPET, WAET; we have no HPET.
    const rsdtSigs = (b: Uint8Array, tables: (gpa: number) => string): string[] => {
      const dv = new DataView(b.buffer, b.byteOffset, b.length);
      return Array.from({ length: (b.length - 36) / 4 }, (_, i) => tables(dv.getUint32(36 + 4 * i, true)));
    };
    const qemuAt: Record<number, string> = { 0x0ffe19df: 'FACP', 0x0ffe1a53: 'APIC', 0x0ffe1ad3: 'HPET', 0x0ffe1b0b: 'WAET' };
    expect(rsdtSigs(qemu('RSDT'), (a) => qemuAt[a]!)).toEqual(['FACP', 'APIC', 'HPET', 'WAET']);
    expect(rsdtSigs(ours('RSDT'), (a) => p.tables.find((t) => t.gpa === a)!.signature)).toEqual(['FACP', 'APIC', 'WAET']);
  });

  it('a table with a wrong checksum is reported with its signature, address and field', () => {
    const plan = buildAcpiTables({ vcpus: 2, ramBytes: 64 * MiB });
    const mem = new Uint8Array(64 * MiB);
    for (const w of plan.writes) mem.set(w.bytes, w.gpa);
    const madt = plan.tables.find((t) => t.signature === 'APIC')!;
    mem[madt.gpa + 50]! ^= 1;
    expect(() => parseAcpi((gpa, len) => mem.slice(gpa, gpa + len))).toThrow(new AcpiParseError('APIC', madt.gpa, 'checksum', 'bytes sum to 0x1, not 0').message);
    mem.fill(0, plan.rsdp, plan.rsdp + 20);
    expect(() => parseAcpi((gpa, len) => mem.slice(gpa, gpa + len))).toThrow(AcpiParseError);
  });

  it('refuses a VM shape the tables cannot describe', () => {
    expect(() => buildAcpiTables({ vcpus: 0, ramBytes: 64 * MiB })).toThrow('acpi: 0 vCPUs is outside 1-255');
    expect(() => buildAcpiTables({ vcpus: 256, ramBytes: 64 * MiB })).toThrow('acpi: 256 vCPUs');
  });
});
