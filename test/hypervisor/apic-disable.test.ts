/**
 * A vCPU's xAPIC really off after IA32_APIC_BASE.EN = 0 (SDM Vol. 3 11.4.3; kvm-unit-tests'
 * xapic "apic_disable"): CPUID.1:EDX.APIC clears, the APIC page reads all ones and drops writes,
 * and setting EN again brings the APIC back.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { createGuestMachine } from '../../vmm/run-guests.js';
import { REG } from '../../machine/cpu/unicorn/constants.js';
import { multibootImage } from '../security/support/tiny-guest.js';

const u32 = (n: number): number[] => [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff];
const LVR = 0xfee00030;
const TPR = 0xfee00080;
/** 32-bit flat code (Multiboot entry, paging off); results stay in registers for the test to read. */
const CODE = [
  ...[0xb9, ...u32(0x1b), 0x0f, 0x32], // mov ecx, IA32_APIC_BASE; rdmsr
  ...[0x25, ...u32(~0x800 >>> 0), 0x0f, 0x30], // and eax, ~EN; wrmsr
  ...[0xb8, ...u32(1), 0x0f, 0xa2, 0x89, 0xd6], // mov eax, 1; cpuid; mov esi, edx
  ...[0xa1, ...u32(LVR), 0x89, 0xc7], // mov eax, [LVR]; mov edi, eax
  ...[0xc7, 0x05, ...u32(TPR), ...u32(0x20)], // mov dword [TPR], 0x20 (dropped)
  ...[0xb9, ...u32(0x1b), 0x0f, 0x32], // rdmsr
  ...[0x0d, ...u32(0x800), 0x0f, 0x30], // or eax, EN; wrmsr
  ...[0xb8, ...u32(1), 0x0f, 0xa2, 0x89, 0xd5], // mov eax, 1; cpuid; mov ebp, edx
  ...[0x8b, 0x1d, ...u32(LVR)], // mov ebx, [LVR]
  ...[0xa1, ...u32(TPR)], // mov eax, [TPR]
  ...[0x66, 0xba, 0xf4, 0x00, 0x89, 0xc1, 0xb0, 0x00, 0xee, 0x89, 0xc8, 0xf4], // mov dx, 0xf4; mov ecx, eax; mov al, 0; out dx, al; mov eax, ecx; hlt
];

describe('a disabled xAPIC in a VM', () => {
  it('clears CPUID.1:EDX.APIC, reads all ones, drops writes, and comes back with EN', async () => {
    const file = path.join(mkdtempSync(path.join(tmpdir(), 'fm-apic-')), 'apic-off.elf');
    writeFileSync(file, multibootImage(CODE));
    const { machine, hypervisor, vms } = createGuestMachine([{ path: file, memBytes: 16 * 1024 * 1024, vcpus: 1 }], { pcpus: 1, pace: 'virtual' });
    try {
      expect(await machine.run({ timeoutMs: 60_000 })).toMatchObject({ reason: 'debug-exit', code: 1 });
      const e = vms[0]!.vcpus[0]!.cpu.engine;
      const reg = (r: number): number => Number(e.readReg(r) & 0xffff_ffffn);
      expect(reg(REG.ESI) & (1 << 9)).toBe(0); // CPUID.1:EDX.APIC while disabled
      expect(reg(REG.EDI)).toBe(0xffffffff); // LVR while disabled
      expect(reg(REG.EBP) & (1 << 9)).toBe(1 << 9); // back after EN = 1
      expect(reg(REG.EBX) & 0xff).toBe(0x14); // LVR: version 0x14, as QEMU's
      expect(reg(REG.ECX)).toBe(0); // TPR: the write while disabled was dropped
    } finally {
      hypervisor.close();
      machine.close();
    }
  });
});
