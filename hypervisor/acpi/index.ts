/**
 * What SeaBIOS leaves in a -kernel guest's RAM before the kernel: the BIOS
 * Data Area and the ACPI tables. Written first, so a kernel loaded over them
 * keeps its own bytes.
 */
import { biosDataArea } from '../bios-data-area.js';
import { buildAcpiTables } from './tables.js';

export { buildAcpiTables, RSDP_ADDR } from './tables.js';
export { parseAcpi, parseMadt, findRsdp, AcpiParseError } from './parse.js';

export function firmwareTables(vcpus: number, ramBytes: number): Array<{ gpa: number; bytes: Uint8Array }> {
  return [...biosDataArea(), ...buildAcpiTables({ vcpus, ramBytes }).writes];
}
