/**
 * Privilege checks Unicorn leaves out for the instructions we emulate after
 * they end a run as invalid (MONITOR, MWAIT, VMCALL/VMMCALL). QEMU's own
 * checks are bypassed there: the run ends before its helpers look at CPL.
 *
 * SDM Vol. 2: MONITOR and MWAIT raise #UD at CPL > 0 unless ring-3 MWAIT is
 * enabled through MSR MISC_ENABLE (we do not offer it). VMCALL outside VMX
 * root (or VMMCALL in an SVM guest) is an exit at any CPL on hardware, but a
 * hypervisor refuses hypercalls from user code: KVM injects #UD at CPL > 0,
 * and so do we, so a ring-3 program cannot shut its VM down.
 */

export type PrivilegedInsn = 'monitor' | 'mwait' | 'vmcall';

/** The #UD a privileged instruction raises at `cpl`, or null when it may run. */
export function privilegeFault(insn: PrivilegedInsn, cpl: number): { vector: 6; reason: string } | null {
  if (cpl === 0) return null;
  return { vector: 6, reason: `${insn.toUpperCase()} at CPL ${cpl}` };
}

/**
 * SYSCALL, which Unicorn hands to our hook before any check of its own:
 * #UD unless EFER.SCE is set. Our identity is AMD's, so SYSCALL runs in
 * 64-bit, compatibility (CSTAR) and legacy protected mode (STAR), as on AMD
 * hardware and QEMU; in real and virtual-8086 mode it is #UD.
 */
export function syscallFault(efer: bigint, mode: string, rflags = 0): { vector: 6; reason: string } | null {
  if (!(efer & 1n)) return { vector: 6, reason: 'SYSCALL with EFER.SCE clear' };
  if (mode === 'real' || (mode === 'protected' && rflags & (1 << 17))) return { vector: 6, reason: `SYSCALL in ${mode === 'real' ? 'real' : 'virtual-8086'} mode` };
  return null;
}

/** MWAIT's ECX: bit 0 (break on masked interrupts) is offered, any other bit is #GP(0) (SDM Vol. 2). */
export function mwaitExtensionFault(ecx: number): { vector: 13; reason: string } | null {
  return ecx >>> 1 ? { vector: 13, reason: `MWAIT with reserved ECX bits 0x${(ecx >>> 0).toString(16)}` } : null;
}
