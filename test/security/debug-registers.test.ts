import { describe, expect, it } from 'vitest';
import { createGuestMachine } from '../../vmm/run-guests.js';
import { buildImages } from '../../tools/build-images.mjs';
import { DebugRegisters, decodeMovDr } from '../../machine/cpu/x86/debug-registers.js';

const MiB = 1024 * 1024;

describe('debug registers of a vCPU', () => {
  /**
   * Before, the guest's MOV to DR7 arming an instruction breakpoint reached
   * Unicorn and killed the process (SIGSEGV in cpu_breakpoint_insert). The
   * golden run (guests-golden / ring3-guest tests) covers the instruction
   * breakpoint against QEMU; strict=1 adds what QEMU 7.2 does not implement.
   */
  it('MOV DR exits to us: instruction breakpoints give #DB, DR7.GD gives #DB with BD, data breakpoints are refused with #GP(0)', async () => {
    const images = (await buildImages({ quiet: true })).guests;
    const { machine, hypervisor, vms } = createGuestMachine([{ path: images['hostile']!, memBytes: 64 * MiB, vcpus: 1, cmdline: 'strict=1' }], { pcpus: 1, pace: 'virtual' });
    try {
      const exit = await machine.run({ timeoutMs: 120_000 });
      const serial = vms[0]!.serial;
      expect(serial).toContain('hostile: instruction breakpoint in DR0: 2 #DB while armed, 0 after DR7 cleared, at the breakpoint: yes, DR6 B0: set\r\n');
      expect(serial).toContain('hostile: DR7.GD: 1 #DB, DR6.BD set, GD after: clear\r\n');
      expect(serial).toContain('hostile: data breakpoint in DR7: #GP(0), DR7 now 0x400\r\n');
      expect(serial).toContain('hostile: WRMSR LSTAR 0x800000000000: #GP(0), LSTAR unchanged: yes\r\n');
      expect(exit).toMatchObject({ reason: 'debug-exit', code: 1 });
      const events = machine.events.map((e) => `${e.kind} ${e.detail}`);
      expect(events.filter((e) => /#DB.*instruction breakpoint, DR6 B-bits 0x1/.test(e))).toHaveLength(2);
      expect(events.filter((e) => /#GP.*DR7 enables a data breakpoint in DR0/.test(e))).toHaveLength(1);
      expect(vms[0]!.vcpus[0]!.cpu.counters['mov-dr']).toBeGreaterThan(10);
    } finally {
      hypervisor.close();
      machine.close();
    }
  });

  it('decodes MOV DR and keeps the SDM fixed bits', () => {
    expect(decodeMovDr(Uint8Array.of(0x0f, 0x23, 0xf8), true)).toEqual({ write: true, dr: 7, gpr: 0, length: 3 });
    expect(decodeMovDr(Uint8Array.of(0x41, 0x0f, 0x21, 0xc7), true)).toEqual({ write: false, dr: 0, gpr: 15, length: 4 });
    expect(decodeMovDr(Uint8Array.of(0x44, 0x0f, 0x21, 0xc7), true)).toBeNull(); // REX.R: DR8+ (#UD)
    expect(decodeMovDr(Uint8Array.of(0x0f, 0x01, 0xc1), true)).toBeNull();
    const d = new DebugRegisters();
    const mov = (write: boolean, dr: number) => ({ write, dr, gpr: 0, length: 3 });
    expect(d.access(mov(false, 6), 0n, 0n, true)).toEqual({ kind: 'done', value: 0xffff0ff0n });
    expect(d.access(mov(true, 7), 0x1_0000_0000n, 0n, true)).toMatchObject({ kind: 'fault', vector: 13 });
    expect(d.access(mov(true, 7), 0x3n, 0n, true)).toEqual({ kind: 'done' });
    expect(d.dr7).toBe(0x403n);
    expect(d.access(mov(true, 7), 0x000d_0001n, 0n, true)).toMatchObject({ kind: 'fault', vector: 13, reason: expect.stringContaining('data breakpoint') });
    expect(d.access(mov(true, 7), 0x0002_0001n, 0n, true)).toMatchObject({ kind: 'fault', vector: 13, reason: expect.stringContaining('I/O breakpoint') });
    expect(d.dr7).toBe(0x403n);
    expect(d.access(mov(false, 5), 0n, 1n << 3n, true)).toMatchObject({ kind: 'fault', vector: 6 }); // CR4.DE
    expect(d.access(mov(false, 5), 0n, 0n, true)).toEqual({ kind: 'done', value: 0x403n });
    const copy = new DebugRegisters();
    copy.restore(d.save());
    expect(copy.save()).toBe(d.save());
  });
});
