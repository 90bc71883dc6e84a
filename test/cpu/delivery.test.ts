import { describe, expect, it } from 'vitest';
import { buildRom } from '../support/asm.js';
import { BareHost } from '../support/bare-host.js';
import type { CpuEvent } from '../../machine/cpu/x86-cpu.js';

describe('interrupt and exception delivery (test/fixtures/cpu-modes.S)', () => {
  it('delivers through the IVT, 32-bit and 64-bit IDT, with error codes, CR2, SYSCALL and ring changes', () => {
    const host = new BareHost(buildRom('cpu-modes.S'));
    const events: CpuEvent[] = [];
    host.cpu.onEvent = (e) => events.push(e);
    host.run();
    // Each letter is printed by the guest only after it checked what the CPU delivered.
    expect(host.console).toBe('RPGLFMUSI');
    expect(host.exitValue).toBe(0);
    const exc = events.filter((e) => e.kind === 'exception').map((e) => [e.vector, e.detail]);
    expect(exc).toEqual([
      [0x21, 'interrupt 0x21 (INT n)'],
      [0, '#DE divide error err=0x0'],
      [13, '#GP general protection err=0x1234'],
      [14, '#PF cr2=0x40000123 err=0x2'],
      [0x80, 'interrupt 0x80 (INT n)'],
    ]);
    expect(host.cpu.counters['syscall']).toBe(1);
  });

  it('reports a triple fault instead of crashing when the IDT is unusable', () => {
    // A ROM whose first instruction divides by zero in real mode with an IVT limit too small.
    const rom = new Uint8Array(128 * 1024).fill(0xf4);
    // at 0xFFFF0: lidt [cs:0xfff8] (limit 0, base 0); xor cx,cx; div cx
    rom.set([0x2e, 0x0f, 0x01, 0x1e, 0xf8, 0xff, 0x31, 0xc9, 0xf7, 0xf1], 0x1fff0 - 0x10);
    rom.set([0xe9, 0xed, 0xff], 0x1fff0); // jmp -0x13 -> 0xFFE0
    rom.set([0, 0, 0, 0, 0, 0], 0x1fff8);
    const host = new BareHost(rom);
    const exits = host.run();
    const last = exits[exits.length - 1]!;
    expect(last.kind).toBe('triple-fault');
    expect(last.kind === 'triple-fault' && last.reason).toMatch(/triple fault: .* while delivering #DF/);
  });
});
