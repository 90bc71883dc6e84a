/**
 * NMI blocking as QEMU keeps it: HF2_NMI_MASK in hflags2 is set while an NMI
 * handler runs and cleared by the engine's own IRET (helper_iret_protected /
 * helper_iret_real), so we set it when we deliver an NMI and read it before
 * delivering the next one. A second NMI that arrives meanwhile waits (one is
 * latched, as on hardware).
 */
import { contextLayout } from './context-layout.js';

/** QEMU's HF2_NMI_MASK (1 << HF2_NMI_SHIFT). */
export const HF2_NMI_MASK = 1 << 2;

export function nmiBlocked(blob: Uint8Array): boolean {
  return (new DataView(blob.buffer, blob.byteOffset, blob.byteLength).getUint32(contextLayout().hflags2, true) & HF2_NMI_MASK) !== 0;
}

/** Sets the mask in a context blob (to be restored into the engine). */
export function setNmiBlocked(blob: Uint8Array): void {
  const dv = new DataView(blob.buffer, blob.byteOffset, blob.byteLength);
  const at = contextLayout().hflags2;
  dv.setUint32(at, dv.getUint32(at, true) | HF2_NMI_MASK, true);
}
