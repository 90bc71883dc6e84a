import { describe, expect, it } from 'vitest';
import { buildRom } from '../support/asm.js';
import { BareHost } from '../support/bare-host.js';
import type { MsrExitHandler } from '../../machine/cpu/x86-cpu.js';
import { newPermissionMap, VMCB_MSRPM_BASE_PA } from '../../machine/cpu/x86/msr-intercept.js';
import { cr4AllowedBits, cr4WriteFault, decodeMovCr } from '../../machine/cpu/x86/control-registers.js';
import { cpuid } from '../../machine/cpu/x86/cpuid.js';

const CONTROL_AREA = 0xf0_0000;
const PERMISSION_MAP = 0xf0_1000;
const passThrough: MsrExitHandler = { controlArea: () => CONTROL_AREA, read: () => undefined, write: () => false };

/** A bare host with a TPR for CR8, as a VM's LAPIC gives its vCPUs (a getter: the CPU looks before field initialisers run). */
class TprHost extends BareHost {
  tpr = 0;
  get cr8(): { read(): number; write(_cpu: unknown, v: number): void } {
    return { read: () => this.tpr >> 4, write: (_cpu, v) => (this.tpr = v << 4) };
  }
}

/** A vCPU (SVM guest mode, as every hypervisor vCPU runs) on a bare host. */
function vcpuHost(rom: Uint8Array): TprHost {
  const h = new TprHost(rom, 16 * 1024 * 1024, { msrExits: passThrough });
  h.memory.writeBytes(PERMISSION_MAP, newPermissionMap([]));
  h.memory.writeU64(CONTROL_AREA + VMCB_MSRPM_BASE_PA, BigInt(PERMISSION_MAP));
  return h;
}

describe('vCPU conformance (test/fixtures/cpu-conformance.S; kvm-unit-tests idt_test, xsave, syscall)', () => {
  it('CR4 reserved bits and OSXSAVE raise #GP, faults push RF, SYSCALL from compatibility mode uses CSTAR, #NP on INT n pushes the INT, CR8 is the TPR', () => {
    const h = vcpuHost(buildRom('cpu-conformance.S'));
    h.run();
    // Before the fixes: 'abCde', then a hang. Unicorn took any CR4 (truncated to 32 bits), no fault
    // pushed RF, and clearing PAE in long mode went through.
    expect(h.console).toBe('ABCDEFGHIJ');
    expect(h.tpr).toBe(0x70);
    expect(h.exitValue).toBe(0);
    expect(h.cpu.counters['mov-cr4']).toBeGreaterThanOrEqual(5);
  });

  it('derives the writable CR4 bits from our CPUID and names why a write faults', () => {
    const allowed = cr4AllowedBits((leaf, sub) => cpuid(leaf, sub, { apicId: 0, logicalCpus: 1 }));
    expect(allowed).toBe(0x7ffn); // VME..OSXMMEXCPT; no XSAVE, PCID, SMEP, SMAP, UMIP, FSGSBASE, PKU in our CPUID
    const legacy = { cr3: 0n, cr4: 0n, efer: 0n };
    expect(cr4WriteFault(0x6a0n, legacy, allowed)).toBeNull();
    expect(cr4WriteFault(0x40000n, legacy, allowed)).toMatch(/reserved bits 0x40000/);
    expect(cr4WriteFault(0x1_0000_0020n, legacy, allowed)).toMatch(/reserved bits 0x100000000/);
    expect(cr4WriteFault(0x600n, { cr3: 0n, cr4: 0x620n, efer: 0x500n }, allowed)).toMatch(/clears PAE in IA-32e mode/);
    const withPcid = allowed | (1n << 17n);
    expect(cr4WriteFault(0x20020n, { cr3: 0x1001n, cr4: 0x20n, efer: 0x500n }, withPcid)).toMatch(/PCIDE/);
    expect(cr4WriteFault(0x20020n, { cr3: 0x1000n, cr4: 0x20n, efer: 0x500n }, withPcid)).toBeNull();
    // Leaf 1 ECX bit 26 (XSAVE) makes OSXSAVE writable.
    const xsave = cr4AllowedBits((leaf) => (leaf === 1 ? { eax: 0, ebx: 0, ecx: 1 << 26, edx: 0 } : { eax: 1, ebx: 0, ecx: 0, edx: 0 }));
    expect(xsave & (1n << 18n)).toBe(1n << 18n);
  });

  it('decodes MOV to/from CRn with REX and the LOCK alias of CR8', () => {
    expect(decodeMovCr(Uint8Array.of(0x0f, 0x22, 0xe0), true)).toEqual({ write: true, cr: 4, gpr: 0, length: 3 });
    expect(decodeMovCr(Uint8Array.of(0x41, 0x0f, 0x22, 0xe7), true)).toEqual({ write: true, cr: 4, gpr: 15, length: 4 });
    expect(decodeMovCr(Uint8Array.of(0x44, 0x0f, 0x22, 0xc0), true)).toEqual({ write: true, cr: 8, gpr: 0, length: 4 });
    expect(decodeMovCr(Uint8Array.of(0xf0, 0x0f, 0x22, 0xc0), false)).toEqual({ write: true, cr: 8, gpr: 0, length: 4 });
    expect(decodeMovCr(Uint8Array.of(0x44, 0x0f, 0x20, 0xc1), true)).toEqual({ write: false, cr: 8, gpr: 1, length: 4 });
    expect(decodeMovCr(Uint8Array.of(0x0f, 0x21, 0xe0), true)).toBeNull();
  });
});
