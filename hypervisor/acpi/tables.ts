/**
 * ACPI tables for a VM, laid out as QEMU 7.2's pc machine with SeaBIOS gives
 * them to a -kernel guest: an ACPI 1.0 RSDP in the BIOS area (0xF0000-0xFFFFF),
 * an RSDT, a revision-1 FADT with the PIIX4 power-management ports (0x600:
 * PM1a event, 0x604: PM1a control, 0x608: PM timer, SCI on IRQ 9), a FACS, a
 * DSDT holding only \_S5 (so the guest can power off), a MADT (one LAPIC per
 * vCPU, the IOAPIC at 0xFEC00000 with GSI base 0, IRQ0 -> GSI 2, IRQ 9 level
 * active-high, LAPIC NMI on LINT1) and a WAET, all in the top 128 KiB of RAM
 * that our e820 reserves for "SeaBIOS high tables".
 * Deliberate differences from QEMU are listed in docs/linux.md ("ACPI tables").
 */
export const ACPI_OEM_ID = 'FIRMNT';
export const ACPI_OEM_TABLE_ID = 'FIRMAMNT';
export const ACPI_CREATOR_ID = 'FRMT';

/** Where the RSDP goes: 16-byte aligned inside the BIOS area Linux scans (0xE0000-0xFFFFF). */
export const RSDP_ADDR = 0xf5a00;
/** The top of RAM our e820 reserves (qemuPcMemoryMap, boot-plan HIGH_TABLES_BYTES). */
export const ACPI_HIGH_TABLES_BYTES = 0x20000;

/** The PIIX4 PM block as QEMU's pc machine places it. */
export const ACPI_PM_BASE = 0x600;
export const ACPI_PM1A_EVT = ACPI_PM_BASE;
export const ACPI_PM1A_CNT = ACPI_PM_BASE + 4;
export const ACPI_PM_TMR = ACPI_PM_BASE + 8;
export const ACPI_GPE0 = 0xafe0;
export const ACPI_SCI_IRQ = 9;

export const IOAPIC_ADDR = 0xfec00000;
export const LAPIC_ADDR = 0xfee00000;

export interface AcpiConfig {
  vcpus: number;
  ramBytes: number;
}

export interface AcpiTablesPlan {
  rsdp: number;
  /** Each table's address and length, in the order they are laid out. */
  tables: Array<{ signature: string; gpa: number; length: number }>;
  writes: Array<{ gpa: number; bytes: Uint8Array }>;
}

const HEADER = 36;

/** Sets the byte at `at` so that the bytes of `b` sum to 0 mod 256. */
function fixChecksum(b: Uint8Array, at: number, length = b.length): void {
  b[at] = 0;
  let sum = 0;
  for (let i = 0; i < length; i++) sum += b[i]!;
  b[at] = (0x100 - (sum & 0xff)) & 0xff;
}

function ascii(b: Uint8Array, at: number, text: string, width: number): void {
  for (let i = 0; i < width; i++) b[at + i] = i < text.length ? text.charCodeAt(i) : 0x20;
}

/** A table with its standard header filled in (checksum last, by finish()). */
function table(signature: string, length: number, revision: number): { b: Uint8Array; dv: DataView } {
  const b = new Uint8Array(length);
  const dv = new DataView(b.buffer);
  ascii(b, 0, signature, 4);
  dv.setUint32(4, length, true);
  b[8] = revision;
  ascii(b, 10, ACPI_OEM_ID, 6);
  ascii(b, 16, ACPI_OEM_TABLE_ID, 8);
  dv.setUint32(24, 1, true);
  ascii(b, 28, ACPI_CREATOR_ID, 4);
  dv.setUint32(32, 1, true);
  return { b, dv };
}

function finish(b: Uint8Array): Uint8Array {
  fixChecksum(b, 9);
  return b;
}

/** DSDT: Name (\_S5, Package (4) { 0, 0, 0, 0 }): PM1a_CNT.SLP_TYP 0 is soft-off on PIIX4, as QEMU's DSDT says. */
function dsdt(): Uint8Array {
  const aml = Uint8Array.of(0x08, 0x5f, 0x53, 0x35, 0x5f, 0x12, 0x06, 0x04, 0x00, 0x00, 0x00, 0x00);
  const { b } = table('DSDT', HEADER + aml.length, 1);
  b.set(aml, HEADER);
  return finish(b);
}

function facs(): Uint8Array {
  const b = new Uint8Array(64);
  ascii(b, 0, 'FACS', 4);
  new DataView(b.buffer).setUint32(4, 64, true);
  return b;
}

/** FADT revision 1 (116 bytes), QEMU's pc values except SMI_CMD (see docs/linux.md). */
function fadt(facsAt: number, dsdtAt: number): Uint8Array {
  const { b, dv } = table('FACP', 116, 1);
  dv.setUint32(36, facsAt, true);
  dv.setUint32(40, dsdtAt, true);
  b[44] = 1; // INT_MODEL (ACPI 1.0): multiple APIC
  dv.setUint16(46, ACPI_SCI_IRQ, true);
  // SMI_CMD 0: the PM block is in ACPI mode from reset (SCI_EN reads 1), so no SMM handshake.
  dv.setUint32(48, 0, true);
  dv.setUint32(56, ACPI_PM1A_EVT, true);
  dv.setUint32(64, ACPI_PM1A_CNT, true);
  dv.setUint32(76, ACPI_PM_TMR, true);
  dv.setUint32(80, ACPI_GPE0, true);
  b[88] = 4; // PM1_EVT_LEN
  b[89] = 2; // PM1_CNT_LEN
  b[91] = 4; // PM_TMR_LEN
  b[92] = 4; // GPE0_BLK_LEN
  dv.setUint16(96, 0x0fff, true); // P_LVL2_LAT: C2 not supported
  dv.setUint16(98, 0x0fff, true); // P_LVL3_LAT: C3 not supported
  b[108] = 0x32; // CENTURY: CMOS index
  // WBINVD | PROC_C1 | SLP_BUTTON | RTC_S4 | USE_PLATFORM_CLOCK, as QEMU.
  dv.setUint32(112, 0x80a5, true);
  return finish(b);
}

/** MADT: LAPIC address, PCAT_COMPAT, then the entries QEMU's pc machine lists (less the PCI link IRQs 5/10/11). */
function madt(vcpus: number): Uint8Array {
  const entries: number[][] = [];
  for (let i = 0; i < vcpus; i++) entries.push([0, 8, i, i, 1, 0, 0, 0]); // Processor Local APIC, enabled
  entries.push([1, 12, 0, 0, ...le32(IOAPIC_ADDR), ...le32(0)]); // I/O APIC id 0, GSI base 0
  entries.push([2, 10, 0, 0, ...le32(2), 0, 0]); // ISA IRQ 0 -> GSI 2, bus-default polarity/trigger
  entries.push([2, 10, 0, ACPI_SCI_IRQ, ...le32(ACPI_SCI_IRQ), 0x0d, 0]); // SCI: active high, level
  entries.push([4, 6, 0xff, 0, 0, 1]); // LAPIC NMI: all processors, LINT1
  const body = entries.flat();
  const { b, dv } = table('APIC', HEADER + 8 + body.length, 1);
  dv.setUint32(36, LAPIC_ADDR, true);
  dv.setUint32(40, 1, true); // PCAT_COMPAT: dual 8259s present
  b.set(body, HEADER + 8);
  return finish(b);
}

function le32(v: number): number[] {
  return [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, (v >>> 24) & 0xff];
}

/** WAET: the PM timer needs one read (ACPI_WAET_TIMER_ONE_READ), as QEMU says. */
function waet(): Uint8Array {
  const { b, dv } = table('WAET', 40, 1);
  dv.setUint32(36, 2, true);
  return finish(b);
}

function rsdt(entries: number[]): Uint8Array {
  const { b, dv } = table('RSDT', HEADER + 4 * entries.length, 1);
  entries.forEach((a, i) => dv.setUint32(HEADER + 4 * i, a, true));
  return finish(b);
}

function rsdp(rsdtAt: number): Uint8Array {
  const b = new Uint8Array(20);
  ascii(b, 0, 'RSD PTR ', 8);
  ascii(b, 9, ACPI_OEM_ID, 6);
  b[15] = 0; // ACPI 1.0: RSDT only, as SeaBIOS under QEMU's pc machine
  new DataView(b.buffer).setUint32(16, rsdtAt, true);
  fixChecksum(b, 8, 20);
  return b;
}

/** The tables for a VM of `vcpus` CPUs and `ramBytes` of RAM, in the order SeaBIOS lays them out. */
export function buildAcpiTables(cfg: AcpiConfig): AcpiTablesPlan {
  if (!Number.isInteger(cfg.vcpus) || cfg.vcpus < 1 || cfg.vcpus > 255) throw new RangeError(`acpi: ${cfg.vcpus} vCPUs is outside 1-255 (xAPIC IDs)`);
  if (!Number.isSafeInteger(cfg.ramBytes) || cfg.ramBytes < 0x200000 || cfg.ramBytes > 0xe0000000) throw new RangeError(`acpi: RAM of ${cfg.ramBytes} bytes is outside [2 MiB, 3.5 GiB]`);
  const tables: AcpiTablesPlan['tables'] = [];
  const writes: AcpiTablesPlan['writes'] = [];
  let at = cfg.ramBytes - ACPI_HIGH_TABLES_BYTES;
  const place = (signature: string, bytes: Uint8Array, align = 1): number => {
    at = Math.ceil(at / align) * align;
    const gpa = at;
    tables.push({ signature, gpa, length: bytes.length });
    writes.push({ gpa, bytes });
    at += bytes.length;
    return gpa;
  };
  const facsAt = place('FACS', facs(), 64);
  const dsdtAt = place('DSDT', dsdt());
  const fadtAt = place('FACP', fadt(facsAt, dsdtAt));
  const madtAt = place('APIC', madt(cfg.vcpus));
  const waetAt = place('WAET', waet());
  const rsdtAt = place('RSDT', rsdt([fadtAt, madtAt, waetAt]));
  const rsdpBytes = rsdp(rsdtAt);
  tables.push({ signature: 'RSD PTR ', gpa: RSDP_ADDR, length: rsdpBytes.length });
  writes.push({ gpa: RSDP_ADDR, bytes: rsdpBytes });
  return { rsdp: RSDP_ADDR, tables, writes };
}
