import { describe, expect, it } from 'vitest';
import { createGuestMachine } from '../../vmm/run-guests.js';
import { buildImages } from '../../tools/build-images.mjs';
import { MsrFault } from '../../machine/cpu/x86-cpu.js';
import { MSR } from '../../machine/cpu/x86/registers.js';

const MiB = 1024 * 1024;

describe('RDMSR/WRMSR exits under the hypervisor', () => {
  it('counts MSR exits per VM, gives each vCPU its own IA32_APIC_BASE, and keeps its structures out of guest reach', async () => {
    const images = (await buildImages({ quiet: true })).guests;
    const { machine, hypervisor, vms } = createGuestMachine([{ path: images['smp']!, memBytes: 64 * MiB, vcpus: 2 }], { pcpus: 2, pace: 'virtual' });
    const vm = vms[0]!;
    const msrEvents: string[] = [];
    for (const v of vm.vcpus) {
      const forward = v.cpu.onEvent;
      v.cpu.onEvent = (e) => {
        if (e.kind === 'msr') msrEvents.push(`${v.index}: ${e.detail}`);
        forward?.(e);
      };
    }
    try {
      const exit = await machine.run({ timeoutMs: 120_000 });
      expect(exit).toMatchObject({ reason: 'debug-exit', code: 1 });
      // The BSP flag only on vCPU 0; both globally enabled at the architectural base.
      expect(msrEvents).toContain('0: RDMSR 0x1b -> 0xfee00900');
      expect(msrEvents).toContain('1: RDMSR 0x1b -> 0xfee00800');
      // Both vCPUs enter long mode through an EFER write that exits.
      expect(msrEvents.filter((e) => e.endsWith('WRMSR 0xc0000080 <- 0x100'))).toHaveLength(2);
      expect(hypervisor.guestReports()[0]!.exits['msr']).toBe(msrEvents.length);
      // The permission map (one for every VM) and the control areas (packed, 16 to a frame) are hypervisor frames, not guest RAM.
      const owners = hypervisor.host.allocator.allocations().map((a) => a.owner);
      expect(owners).toEqual(expect.arrayContaining(['hv:msr-map', 'hv:vcpu-control']));
      const areas = vm.vcpus.map((c) => vm.msrExits.controlArea(c.cpu));
      expect(new Set(areas).size).toBe(vm.vcpus.length);
      for (const hpa of [vm.msrExits.permissionMap, ...areas]) {
        expect(hypervisor.host.allocator.ownerOf(hpa)).toMatch(/^hv:/);
        for (const m of vm.vmMemory.ept.mappings()) expect(hpa >= m.hpa && hpa < m.hpa + m.size).toBe(false);
      }
      // What the guest may not set: SVM (not in our CPUID), x2APIC, a moved LAPIC.
      const cpu = vm.vcpus[0]!.cpu;
      expect(() => vm.msrExits.write(cpu, MSR.EFER, 0x1500n)).toThrow(MsrFault);
      expect(() => vm.msrExits.write(cpu, MSR.APIC_BASE, 0xfee00d00n)).toThrow(/x2APIC/);
      expect(() => vm.msrExits.write(cpu, MSR.APIC_BASE, 0xfed00900n)).toThrow(/relocation is not supported/);
      expect(vm.msrExits.write(cpu, MSR.APIC_BASE, 0xfee00100n)).toBe(true);
      expect(vm.vcpus[0]!.lapic.hardwareEnabled()).toBe(false);
      expect(vm.msrExits.read(cpu, MSR.APIC_BASE)).toBe(0xfee00100n);
    } finally {
      hypervisor.close();
      machine.close();
    }
  });
});
