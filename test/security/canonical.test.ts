/**
 * Canonical addresses the CPU model lets through (issue 11): WRMSR of a
 * non-canonical FS/GS base is #GP(0), and a non-canonical access through SS
 * is #SS(0), not #GP(0). QEMU's TCG does neither, so the hostile guest checks
 * them only with strict=1 (guests/hostile/canonical.c).
 */
import { describe, expect, it } from 'vitest';
import { createGuestMachine } from '../../vmm/run-guests.js';
import { buildImages } from '../../tools/build-images.mjs';
import { nonCanonicalVector } from '../../machine/cpu/x86/stack-segment.js';

const MiB = 1024 * 1024;

describe('canonical addresses in a vCPU', () => {
  it('refuses non-canonical FS_BASE, GS_BASE, KERNEL_GS_BASE with #GP(0) and raises #SS(0) for SS accesses', async () => {
    const images = (await buildImages({ quiet: true })).guests;
    const { machine, hypervisor, vms } = createGuestMachine([{ path: images['hostile']!, memBytes: 64 * MiB, vcpus: 1, cmdline: 'strict=1' }], { pcpus: 1, pace: 'virtual' });
    try {
      const exit = await machine.run({ timeoutMs: 120_000 });
      const serial = vms[0]!.serial;
      for (const msr of ['FS_BASE', 'GS_BASE', 'KERNEL_GS_BASE']) expect(serial).toContain(`hostile: WRMSR ${msr} 0x800000001000: #GP(0), ${msr} unchanged: yes\r\n`);
      expect(serial).toContain('hostile: WRMSR FS_BASE 0xffff800000002000: taken\r\n');
      expect(serial).toContain('hostile: read at non-canonical [rbp+8]: #SS(0)\r\n');
      expect(serial).toContain('hostile: read at non-canonical ss:[rax]: #SS(0)\r\n');
      expect(serial).toContain('hostile: read at non-canonical [r13+8]: #GP(0)\r\n');
      // The DS-based probe of kernel_probes() stays #GP.
      expect(serial).toContain('hostile: read at non-canonical 0x800000001000: #GP(0)\r\n');
      expect(exit).toMatchObject({ reason: 'debug-exit', code: 1 });
    } finally {
      hypervisor.close();
      machine.close();
    }
  });

  it('tells SS accesses from others by decoding the instruction', () => {
    const bad = 0x0000_8000_0000_1000n;
    const ok = 0x0000_0000_0010_0000n;
    const v = (bytes: number[], rsp = ok, rbp = ok): number => nonCanonicalVector(Uint8Array.from(bytes), { rsp, rbp });
    // Implicit stack accesses with a non-canonical RSP (or RBP for LEAVE).
    expect(v([0x50], bad)).toBe(12); // push rax
    expect(v([0x41, 0x5f], bad)).toBe(12); // pop r15
    expect(v([0xe8, 0, 0, 0, 0], bad)).toBe(12); // call rel32
    expect(v([0xc3], bad)).toBe(12); // ret
    expect(v([0xc9], ok, bad)).toBe(12); // leave
    expect(v([0x0f, 0xa0], bad)).toBe(12); // push fs
    // PUSH r/m: the stack is fine, the operand is not: its own segment.
    expect(v([0xff, 0x30])).toBe(13); // push qword [rax]
    expect(v([0xff, 0x30], bad)).toBe(12);
    // Explicit operands: RSP/RBP bases are SS, R12/R13 (REX.B) and RIP-relative are not.
    expect(v([0x48, 0x8b, 0x44, 0x24, 0x08])).toBe(12); // mov rax, [rsp+8]
    expect(v([0x49, 0x8b, 0x44, 0x24, 0x08])).toBe(13); // mov rax, [r12+8]
    expect(v([0x48, 0x8b, 0x45, 0x08])).toBe(12); // mov rax, [rbp+8]
    expect(v([0x49, 0x8b, 0x45, 0x08])).toBe(13); // mov rax, [r13+8]
    expect(v([0x48, 0x8b, 0x05, 0, 0, 0, 0])).toBe(13); // mov rax, [rip+0]
    expect(v([0x48, 0x8b, 0x04, 0x25, 0, 0, 0, 0])).toBe(13); // mov rax, [disp32]
    expect(v([0x48, 0x8b, 0x04, 0x2c])).toBe(12); // mov rax, [rsp+rbp] (base RSP)
    expect(v([0x48, 0x8b, 0x04, 0x23])).toBe(13); // mov rax, [rbx] through a SIB (no index)
    // Segment overrides win.
    expect(v([0x36, 0x48, 0x8b, 0x00])).toBe(12); // mov rax, ss:[rax]
    expect(v([0x3e, 0x48, 0x8b, 0x45, 0x08])).toBe(13); // mov rax, ds:[rbp+8]
    expect(v([0x0f, 0x10, 0x44, 0x24, 0x10])).toBe(12); // movups xmm0, [rsp+16]
    // String instructions and what cannot be decoded: #GP, as before.
    expect(v([0x48, 0xa5])).toBe(13); // movsq
    expect(v([])).toBe(13);
  });
});
