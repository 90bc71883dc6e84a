import { describe, expect, it } from 'vitest';
import { mwaitExtensionFault, privilegeFault, syscallFault } from '../../machine/cpu/x86/privilege.js';

describe('privilege checks of instructions we emulate', () => {
  it('MONITOR, MWAIT and VMCALL run at CPL 0 only (#UD above)', () => {
    for (const insn of ['monitor', 'mwait', 'vmcall'] as const) {
      expect(privilegeFault(insn, 0)).toBeNull();
      for (const cpl of [1, 2, 3]) expect(privilegeFault(insn, cpl)).toEqual({ vector: 6, reason: `${insn.toUpperCase()} at CPL ${cpl}` });
    }
  });

  it('SYSCALL needs EFER.SCE, and protected or long mode', () => {
    expect(syscallFault(0x501n, 'long')).toBeNull();
    expect(syscallFault(0x500n, 'long')).toMatchObject({ vector: 6, reason: 'SYSCALL with EFER.SCE clear' });
    // AMD (our identity): compatibility mode goes to CSTAR, legacy protected mode to STAR[31:0].
    expect(syscallFault(0x501n, 'compatibility')).toBeNull();
    expect(syscallFault(0x1n, 'protected')).toBeNull();
    expect(syscallFault(0x1n, 'protected', 1 << 17)).toMatchObject({ vector: 6, reason: 'SYSCALL in virtual-8086 mode' });
    expect(syscallFault(0x1n, 'real')).toMatchObject({ vector: 6, reason: 'SYSCALL in real mode' });
  });

  it('MWAIT takes ECX bit 0 (break on masked interrupts) and nothing else', () => {
    expect(mwaitExtensionFault(0)).toBeNull();
    expect(mwaitExtensionFault(1)).toBeNull();
    expect(mwaitExtensionFault(2)).toMatchObject({ vector: 13 });
    expect(mwaitExtensionFault(0x8000_0000)).toMatchObject({ vector: 13, reason: 'MWAIT with reserved ECX bits 0x80000000' });
  });
});
