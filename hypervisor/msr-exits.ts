/**
 * The hypervisor's side of RDMSR/WRMSR exits (the CPU side is
 * machine/cpu/x86/msr-intercept.ts): a per-VM MSR permission map and a
 * per-vCPU control area, in host frames no guest can reach, and the MSRs the
 * hypervisor answers itself.
 *
 * IA32_TSC reads the VM's virtual-time TSC and writes its offset (vm-tsc.ts);
 * IA32_TSC_DEADLINE arms the vLAPIC's deadline timer at the virtual time the
 * TSC reaches the value. IA32_APIC_BASE belongs to the vLAPIC: the BSP flag per vCPU and the global
 * enable. EFER writes are checked against what our CPUID offers. Reads of
 * FS_BASE, GS_BASE and KERNEL_GS_BASE pass through without exits, and so do
 * EFER reads (see newPermissionMap); their writes exit for the canonical
 * check (a guest kernel writes them on context switches: an exit each). Every other access exits, is counted, and is then
 * carried out by the CPU model, after the checks the model leaves out
 * (reserved EFER bits, canonical addresses in LSTAR, CSTAR and SYSENTER_E*P).
 */
import { MsrFault, type MsrExitHandler, type X86Cpu } from '../machine/cpu/x86-cpu.js';
import { MSRPM_FRAMES, newPermissionMap, VMCB_MSRPM_BASE_PA } from '../machine/cpu/x86/msr-intercept.js';
import { MSR } from '../machine/cpu/x86/registers.js';
import { isCanonical } from '../machine/cpu/x86/paging.js';
import { LAPIC_DEFAULT_BASE, type LocalApic } from '../machine/devices/lapic.js';
import type { HostMemoryManager } from './host-memory.js';
import type { VmTsc } from './vm-tsc.js';
import { MSR_TSC_DEADLINE } from '../machine/cpu/x86/tsc.js';

export const PASS_THROUGH_MSRS: readonly number[] = [];
/**
 * Read without an exit. Writes exit: the CPU model (QEMU TCG) takes a
 * non-canonical FS/GS base, where the SDM (and KVM) raise #GP(0).
 */
export const READ_PASS_THROUGH_MSRS: readonly number[] = [MSR.FS_BASE, MSR.GS_BASE, MSR.KERNEL_GS_BASE];

/** Intercepted MSRs that hold linear addresses: a non-canonical value is #GP(0) (SDM Vol. 4; the CPU model takes anything). */
const CANONICAL_MSRS = new Set<number>([MSR.LSTAR, MSR.CSTAR, 0x175 /* SYSENTER_ESP */, 0x176 /* SYSENTER_EIP */, MSR.FS_BASE, MSR.GS_BASE, MSR.KERNEL_GS_BASE]);

const APIC_BASE_BSP = 1n << 8n;
const APIC_BASE_X2APIC = 1n << 10n;
const APIC_BASE_ENABLE = 1n << 11n;
/** Reserved: bits 0-7, 9, and above the 40-bit physical address width we report. */
const APIC_BASE_RESERVED = 0xffn | (1n << 9n) | ~((1n << 40n) - 1n);
/** EFER bits our CPUID offers: SCE, LME, LMA, NXE. The CPU model would also take SVME, which the guest must not get. */
const EFER_ALLOWED = (1n << 0n) | (1n << 8n) | (1n << 10n) | (1n << 11n);

/**
 * The MSR permission map is one policy for every VM, so the hypervisor keeps
 * one (2 frames); vCPU control areas use the first 0x100 bytes of a VMCB, so
 * sixteen share a frame. A VM then costs no frames of its own for MSR exits.
 */
export class MsrExitFrames {
  private permissionMap = -1;
  private readonly freeSlots: number[] = [];
  private readonly adopting = new Set<number>();

  constructor(private readonly host: HostMemoryManager) {}

  get map(): number {
    if (this.permissionMap < 0) {
      this.permissionMap = this.host.allocator.allocateContiguous(MSRPM_FRAMES, { owner: 'hv:msr-map' });
      this.host.memory.writeBytes(this.permissionMap, newPermissionMap(PASS_THROUGH_MSRS, READ_PASS_THROUGH_MSRS));
    }
    return this.permissionMap;
  }

  controlArea(): number {
    if (this.freeSlots.length === 0) {
      const [frame] = this.host.allocator.allocate(1, { owner: 'hv:vcpu-control' });
      for (let off = 4096 - CONTROL_AREA_BYTES; off >= 0; off -= CONTROL_AREA_BYTES) this.freeSlots.push(frame! + off);
    }
    const area = this.freeSlots.pop()!;
    // An adopted area is handed back as it is: its VM (and, on a rollback, the old process) still uses it.
    if (this.adopting.delete(area)) return area;
    this.host.memory.writeBytes(area, new Uint8Array(CONTROL_AREA_BYTES));
    this.host.memory.writeU64(area + VMCB_MSRPM_BASE_PA, BigInt(this.map));
    return area;
  }

  freeControlArea(area: number): void {
    this.freeSlots.push(area);
  }

  /** The permission map and the free control-area slots (live update: a new process goes on from here). */
  residentState(): { permissionMap: number; freeSlots: number[] } {
    return { permissionMap: this.permissionMap, freeSlots: [...this.freeSlots] };
  }

  /** Adopts residentState(); `pending` are areas the next controlArea() calls hand out, in order (a VM being adopted gets its own back). */
  adoptResident(rec: { permissionMap: number; freeSlots: readonly number[] }, pending: readonly number[] = []): void {
    this.permissionMap = rec.permissionMap;
    this.freeSlots.length = 0;
    this.freeSlots.push(...rec.freeSlots, ...[...pending].reverse());
    this.adopting.clear();
    for (const a of pending) this.adopting.add(a);
  }
}

/** The part of a VMCB control area QEMU reads for MSR exits and virtual interrupts (+0x48, +0x64). */
const CONTROL_AREA_BYTES = 0x100;

export class VmMsrs implements MsrExitHandler {
  private readonly controlAreas: number[];
  /** Every intercepted access, before it is carried out (behaviour observers). */
  onAccess: ((cpu: X86Cpu, index: number, write: boolean) => void) | undefined;

  constructor(
    private readonly frames: MsrExitFrames,
    vcpus: number,
    private readonly lapicOf: (cpu: X86Cpu) => LocalApic,
    private readonly tsc: VmTsc,
  ) {
    this.controlAreas = Array.from({ length: vcpus }, () => frames.controlArea());
  }

  get permissionMap(): number {
    return this.frames.map;
  }

  /** The host addresses of this VM's control areas, by vCPU. */
  get areas(): readonly number[] {
    return this.controlAreas;
  }

  /** The VM is gone: its control areas go back to the hypervisor. */
  release(): void {
    for (const a of this.controlAreas.splice(0)) this.frames.freeControlArea(a);
  }

  controlArea(cpu: X86Cpu): number {
    const area = this.controlAreas[cpu.index];
    if (area === undefined) throw new Error(`no control area for vCPU ${cpu.index}`);
    return area;
  }

  read(cpu: X86Cpu, index: number): bigint | undefined {
    this.onAccess?.(cpu, index, false);
    if (index === MSR.TSC) return this.tsc.read(cpu.index);
    if (index === MSR_TSC_DEADLINE) return this.lapicOf(cpu).tscDeadline.deadline;
    if (index !== MSR.APIC_BASE) return undefined;
    const lapic = this.lapicOf(cpu);
    return BigInt(LAPIC_DEFAULT_BASE) | (lapic.bsp ? APIC_BASE_BSP : 0n) | (lapic.hardwareEnabled() ? APIC_BASE_ENABLE : 0n);
  }

  readTsc(cpu: X86Cpu): bigint {
    return this.tsc.read(cpu.index);
  }

  write(cpu: X86Cpu, index: number, value: bigint): boolean {
    this.onAccess?.(cpu, index, true);
    if (index === MSR.EFER && value & ~EFER_ALLOWED) throw new MsrFault(`reserved bits in EFER 0x${value.toString(16)}`);
    if (CANONICAL_MSRS.has(index) && !isCanonical(value)) throw new MsrFault(`non-canonical address 0x${value.toString(16)} in MSR 0x${index.toString(16)}`);
    if (index === MSR.TSC) {
      this.tsc.write(cpu.index, value);
      // An armed deadline compares against the TSC: moving the TSC moves the time it is due.
      const deadline = this.lapicOf(cpu).tscDeadline;
      if (deadline.deadline !== 0n) deadline.write(deadline.deadline, this.tsc.nsAt(cpu.index, deadline.deadline));
      return true;
    }
    if (index === MSR_TSC_DEADLINE) {
      this.lapicOf(cpu).tscDeadline.write(value, this.tsc.nsAt(cpu.index, value));
      return true;
    }
    if (index !== MSR.APIC_BASE) return false;
    if (value & APIC_BASE_RESERVED) throw new MsrFault(`reserved bits in IA32_APIC_BASE 0x${value.toString(16)}`);
    if (value & APIC_BASE_X2APIC) throw new MsrFault('x2APIC is not offered (CPUID.1:ECX.x2APIC = 0)');
    const base = value & ~0xfffn;
    if (base !== BigInt(LAPIC_DEFAULT_BASE)) {
      // Not a #GP on hardware: refuse loudly rather than leave the guest talking to the old page.
      throw new Error(`vCPU ${cpu.index} moved its LAPIC to 0x${base.toString(16)}: LAPIC relocation is not supported`);
    }
    this.lapicOf(cpu).setHardwareEnabled((value & APIC_BASE_ENABLE) !== 0n);
    return true;
  }
}
