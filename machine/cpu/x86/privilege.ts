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
