/**
 * Reads ACPI tables back from guest-physical memory the way an OS finds them:
 * the RSDP by its signature on a 16-byte boundary in the EBDA's first KiB or
 * in 0xE0000-0xFFFFF, then the RSDT (or XSDT) and every table it lists, each
 * checked for length and checksum. Errors name the table, address and field.
 */
export class AcpiParseError extends Error {
  constructor(where: string, gpa: number, field: string, problem: string) {
    super(`acpi: ${where} at 0x${gpa.toString(16)}: ${field}: ${problem}`);
    this.name = 'AcpiParseError';
  }
}

export type ReadPhysical = (gpa: number, length: number) => Uint8Array;

export interface AcpiHeader {
  signature: string;
  gpa: number;
  length: number;
  revision: number;
  oemId: string;
  oemTableId: string;
  oemRevision: number;
  creatorId: string;
  creatorRevision: number;
  bytes: Uint8Array;
}

export interface MadtInfo {
  lapicAddress: number;
  flags: number;
  lapics: Array<{ processorUid: number; apicId: number; flags: number }>;
  ioapics: Array<{ id: number; address: number; gsiBase: number }>;
  overrides: Array<{ bus: number; source: number; gsi: number; flags: number }>;
  lapicNmis: Array<{ processorUid: number; flags: number; lint: number }>;
}

export interface ParsedAcpi {
  rsdp: { gpa: number; revision: number; oemId: string; rsdt: number; xsdt: number | null };
  tables: AcpiHeader[];
}

const text = (b: Uint8Array, at: number, n: number): string => String.fromCharCode(...b.subarray(at, at + n));
const sum = (b: Uint8Array): number => b.reduce((s, x) => (s + x) & 0xff, 0);

export function findRsdp(read: ReadPhysical): number {
  const ebda = new DataView(read(0x40e, 2).buffer.slice(0)).getUint16(0, true) << 4;
  const areas: Array<[number, number]> = [...(ebda >= 0x80000 && ebda < 0xa0000 ? [[ebda, 0x400] as [number, number]] : []), [0xe0000, 0x20000]];
  for (const [base, len] of areas) {
    const b = read(base, len);
    for (let o = 0; o + 20 <= len; o += 16) {
      if (text(b, o, 8) === 'RSD PTR ' && sum(b.subarray(o, o + 20)) === 0) return base + o;
    }
  }
  throw new AcpiParseError('RSDP', 0xe0000, 'signature', 'no "RSD PTR " with a valid checksum in the EBDA or 0xE0000-0xFFFFF');
}

function readTable(read: ReadPhysical, gpa: number, expect?: string): AcpiHeader {
  const head = read(gpa, 36);
  const dv = new DataView(head.buffer, head.byteOffset, 36);
  const signature = text(head, 0, 4);
  const length = dv.getUint32(4, true);
  if (expect && signature !== expect) throw new AcpiParseError(expect, gpa, 'signature', `found "${signature}"`);
  if (length < 36 || length > 0x100000) throw new AcpiParseError(signature, gpa, 'length', `${length} is not a table length`);
  const bytes = read(gpa, length);
  if (sum(bytes) !== 0) throw new AcpiParseError(signature, gpa, 'checksum', `bytes sum to 0x${sum(bytes).toString(16)}, not 0`);
  return {
    signature,
    gpa,
    length,
    revision: head[8]!,
    oemId: text(head, 10, 6),
    oemTableId: text(head, 16, 8),
    oemRevision: dv.getUint32(24, true),
    creatorId: text(head, 28, 4),
    creatorRevision: dv.getUint32(32, true),
    bytes,
  };
}

export function parseAcpi(read: ReadPhysical): ParsedAcpi {
  const at = findRsdp(read);
  const r = read(at, 36);
  const dv = new DataView(r.buffer, r.byteOffset, 36);
  const revision = r[15]!;
  let xsdt: number | null = null;
  if (revision >= 2) {
    const len = dv.getUint32(20, true);
    if (sum(r.subarray(0, Math.min(len, 36))) !== 0) throw new AcpiParseError('RSDP', at, 'extended checksum', 'bytes do not sum to 0');
    xsdt = Number(dv.getBigUint64(24, true));
  }
  const rsdp = { gpa: at, revision, oemId: text(r, 9, 6), rsdt: dv.getUint32(16, true), xsdt };
  const root = xsdt ? readTable(read, xsdt, 'XSDT') : readTable(read, rsdp.rsdt, 'RSDT');
  const width = xsdt ? 8 : 4;
  const rv = new DataView(root.bytes.buffer, root.bytes.byteOffset, root.length);
  const tables = [root];
  for (let o = 36; o + width <= root.length; o += width) {
    const gpa = width === 8 ? Number(rv.getBigUint64(o, true)) : rv.getUint32(o, true);
    const t = readTable(read, gpa);
    tables.push(t);
    if (t.signature === 'FACP') {
      const fv = new DataView(t.bytes.buffer, t.bytes.byteOffset, t.length);
      const dsdt = fv.getUint32(40, true);
      if (dsdt) tables.push(readTable(read, dsdt, 'DSDT'));
      const facsAt = fv.getUint32(36, true);
      if (facsAt) {
        const f = read(facsAt, 64);
        if (text(f, 0, 4) !== 'FACS') throw new AcpiParseError('FACS', facsAt, 'signature', `found "${text(f, 0, 4)}"`);
        const fl = new DataView(f.buffer, f.byteOffset, 64).getUint32(4, true);
        tables.push({ signature: 'FACS', gpa: facsAt, length: fl, revision: f[32]!, oemId: '', oemTableId: '', oemRevision: 0, creatorId: '', creatorRevision: 0, bytes: read(facsAt, fl) });
      }
    }
  }
  return { rsdp, tables };
}

export function parseMadt(t: AcpiHeader): MadtInfo {
  const b = t.bytes;
  const dv = new DataView(b.buffer, b.byteOffset, t.length);
  const info: MadtInfo = { lapicAddress: dv.getUint32(36, true), flags: dv.getUint32(40, true), lapics: [], ioapics: [], overrides: [], lapicNmis: [] };
  for (let o = 44; o < t.length; ) {
    const type = b[o]!;
    const len = b[o + 1]!;
    if (len < 2 || o + len > t.length) throw new AcpiParseError('APIC', t.gpa + o, `entry type ${type} length`, `${len} runs past the table (${t.length} bytes)`);
    if (type === 0) info.lapics.push({ processorUid: b[o + 2]!, apicId: b[o + 3]!, flags: dv.getUint32(o + 4, true) });
    else if (type === 1) info.ioapics.push({ id: b[o + 2]!, address: dv.getUint32(o + 4, true), gsiBase: dv.getUint32(o + 8, true) });
    else if (type === 2) info.overrides.push({ bus: b[o + 2]!, source: b[o + 3]!, gsi: dv.getUint32(o + 4, true), flags: dv.getUint16(o + 8, true) });
    else if (type === 4) info.lapicNmis.push({ processorUid: b[o + 2]!, flags: dv.getUint16(o + 3, true), lint: b[o + 5]! });
    o += len;
  }
  return info;
}
