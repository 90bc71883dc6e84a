/**
 * The BIOS Data Area (0x400) fields that kernels read at boot, as SeaBIOS
 * leaves them under QEMU's pc machine: COM1's port, the EBDA segment at 0x40E
 * (Linux's reserve_bios_regions, Xen's trampoline placement) and the base
 * memory size in KiB at 0x413, plus the EBDA's own size byte. Our e820
 * (qemuPcMemoryMap) reserves the EBDA at 0x9FC00 (1 KiB) the same way.
 */
export const BDA_COM1 = 0x400;
export const BDA_EBDA_SEGMENT = 0x40e;
export const BDA_BASE_MEMORY_KIB = 0x413;
export const EBDA_BASE = 0x9fc00;

export function biosDataArea(): Array<{ gpa: number; bytes: Uint8Array }> {
  const bda = new Uint8Array(0x20);
  const dv = new DataView(bda.buffer);
  dv.setUint16(BDA_COM1 - 0x400, 0x3f8, true);
  dv.setUint16(BDA_EBDA_SEGMENT - 0x400, EBDA_BASE >> 4, true);
  dv.setUint16(BDA_BASE_MEMORY_KIB - 0x400, EBDA_BASE >> 10, true); // 639 KiB
  return [
    { gpa: 0x400, bytes: bda },
    { gpa: EBDA_BASE, bytes: Uint8Array.of(1) }, // EBDA size in KiB
  ];
}
