import { describe, expect, it } from 'vitest';
import { buildRom } from '../support/asm.js';
import { BareHost } from '../support/bare-host.js';
import { MsrFault, type CpuEvent, type MsrExitHandler, type X86Cpu } from '../../machine/cpu/x86-cpu.js';
import { msrpmPosition, newPermissionMap, setMsrIntercept, svmLayout, VMCB_MSRPM_BASE_PA } from '../../machine/cpu/x86/msr-intercept.js';

const CONTROL_AREA = 0xf0_0000;
const PERMISSION_MAP = 0xf0_1000;

/** Answers IA32_APIC_BASE itself, refuses writes to 0xc0ffee, and leaves the rest to the CPU model. */
class TestMsrs implements MsrExitHandler {
  readonly seen: string[] = [];
  area = CONTROL_AREA;

  controlArea(): number {
    return this.area;
  }

  read(_cpu: X86Cpu, index: number): bigint | undefined {
    this.seen.push(`rd ${index.toString(16)}`);
    return index === 0x1b ? 0x1234_5678_9abc_d000n : undefined;
  }

  write(_cpu: X86Cpu, index: number, value: bigint): boolean {
    this.seen.push(`wr ${index.toString(16)}=${value.toString(16)}`);
    if (index === 0xc0ffee) throw new MsrFault('refused by the test');
    return false;
  }
}

describe('RDMSR/WRMSR exits (test/fixtures/msr-exits.S)', () => {
  it('this Unicorn build supports the SVM intercept path', () => {
    expect(svmLayout()).toMatchObject({ vmcb: expect.any(Number), intercept: expect.any(Number) });
  });

  it('exits on every intercepted access, precisely, with handler values, CPU-model fallback and #GP', () => {
    const msrs = new TestMsrs();
    const host = new BareHost(buildRom('msr-exits.S'), 16 * 1024 * 1024, { msrExits: msrs });
    host.memory.writeBytes(PERMISSION_MAP, newPermissionMap([]));
    host.memory.writeU64(CONTROL_AREA + VMCB_MSRPM_BASE_PA, BigInt(PERMISSION_MAP));
    const events: CpuEvent[] = [];
    host.cpu.onEvent = (e) => events.push(e);
    expect(host.cpu.msrExits).toBe(true);
    host.run();
    expect(host.console).toBe('ABCDEF');
    expect(host.exitValue).toBe(0);
    // EFER reads pass through (our page walker reads EFER on every TLB fill); everything else exits.
    expect(msrs.seen).toEqual(['rd 1b', 'rd 1b', 'wr 174=8', 'rd 174', 'wr c0ffee=0', 'rd 40000000', 'wr c0000080=1']);
    expect(host.cpu.counters['rdmsr']).toBe(4);
    expect(host.cpu.counters['wrmsr']).toBe(3);
    expect(events.filter((e) => e.kind === 'msr').map((e) => e.detail)).toContain('WRMSR 0xc0ffee: #GP (refused by the test)');
    expect(events.filter((e) => e.kind === 'exception').map((e) => e.vector)).toEqual([0x21, 13]);
  });

  it('a restored context uses the MSR control area of the CPU it is restored into', () => {
    const rom = buildRom('msr-exits.S');
    const source = new BareHost(rom, 16 * 1024 * 1024, { msrExits: new TestMsrs() });
    const saved = source.cpu.saveState();
    // Another machine whose control area lives elsewhere; the source's address holds nothing here.
    const msrs = new TestMsrs();
    msrs.area = 0xe0_0000;
    const target = new BareHost(rom, 16 * 1024 * 1024, { msrExits: msrs });
    target.memory.writeBytes(PERMISSION_MAP, newPermissionMap([]));
    target.memory.writeU64(msrs.area + VMCB_MSRPM_BASE_PA, BigInt(PERMISSION_MAP));
    target.cpu.restoreState(saved);
    target.run();
    expect(target.console).toBe('ABCDEF');
    expect(target.cpu.counters['wrmsr']).toBe(3);
  });

  it('without a handler (bare metal) MSRs run inside the CPU model and never exit', () => {
    const host = new BareHost(buildRom('msr-exits.S'));
    expect(host.cpu.msrExits).toMatch(/bare metal/);
    host.run();
    // The CPU model has no handler value for IA32_APIC_BASE, so the first check fails; nothing was counted.
    expect(host.console).toBe('!a');
    expect(host.cpu.counters['rdmsr']).toBeUndefined();
  });
});

describe('MSR permission map (AMD APM vol. 2, 15.11)', () => {
  it('places the three MSR ranges at 0, 0x800 and 0x1000, two bits per MSR', () => {
    expect(msrpmPosition(0)).toEqual({ byte: 0, bit: 0 });
    expect(msrpmPosition(0x1b)).toEqual({ byte: 6, bit: 6 });
    expect(msrpmPosition(0xc0000080)).toEqual({ byte: 0x800 + 0x20, bit: 0 });
    expect(msrpmPosition(0xc0010000)).toEqual({ byte: 0x1000, bit: 0 });
    expect(msrpmPosition(0x2000)).toBeNull();
    expect(msrpmPosition(0xc0002000)).toBeNull();
    const map = new Uint8Array(0x1800);
    setMsrIntercept(map, 0x1b, false, true);
    expect(map[6]).toBe(0b1000_0000);
    expect(() => setMsrIntercept(map, 0x40000000, true, true)).toThrow(/outside the permission map/);
  });
});
