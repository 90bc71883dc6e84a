import { describe, expect, it } from 'vitest';
import { buildRom } from '../support/asm.js';
import { PcMachine } from '../../machine/platform/pc.js';

const MiB = 1024 * 1024;

describe('idle CPUs', () => {
  it('HLT sleeps until the next PIT interrupt (test/fixtures/hlt-timer.S)', async () => {
    const m = new PcMachine({ memBytes: 16 * MiB, cpus: 1, rom: buildRom('hlt-timer.S'), pace: 'virtual' });
    const exit = await m.run({ timeoutMs: 30_000 });
    // The guest exits with its tick count: 10 ticks of ~1 ms each, all taken from HLT.
    expect(exit).toMatchObject({ reason: 'debug-exit', code: (10 << 1) | 1 });
    expect(m.cpus[0]!.counters['hlt']).toBe(10);
    const wakes = m.events.filter((e) => e.kind === 'wake');
    expect(wakes).toHaveLength(10);
    expect(wakes.every((w) => w.detail.startsWith('interrupt 0x20'))).toBe(true);
    // Virtual time moved by the PIT period while the CPU slept: 10 x 1193 / 1.193182 MHz.
    expect(exit.atNs / 1e6).toBeCloseTo(10.0, 0);
    m.close();
  });

  it('MWAIT sleeps until another CPU writes the monitored line (test/fixtures/mwait-wake.S)', async () => {
    const m = new PcMachine({ memBytes: 16 * MiB, cpus: 2, rom: buildRom('mwait-wake.S'), pace: 'virtual' });
    const exit = await m.run({ timeoutMs: 30_000 });
    expect(m.debugcon.text()).toBe('W');
    expect(exit).toMatchObject({ reason: 'debug-exit', code: (0x42 << 1) | 1 });
    const kinds = m.events.map((e) => `${e.cpu ?? '-'}:${e.kind}`);
    expect(kinds).toContain('1:ipi');
    const mwait = m.events.findIndex((e) => e.kind === 'mwait' && e.cpu === 0);
    const wake = m.events.findIndex((e) => e.kind === 'wake' && e.cpu === 0);
    expect(mwait).toBeGreaterThanOrEqual(0);
    expect(wake).toBeGreaterThan(mwait);
    expect(m.events[wake]!.detail).toMatch(/monitored line 0x20000: write by CPU 1/);
    m.close();
  });

  it('a machine whose CPUs halt with interrupts off stops with reason "halted"', async () => {
    const rom = new Uint8Array(128 * 1024).fill(0xf4); // cli-less reset: hlt with IF=0
    const m = new PcMachine({ memBytes: 16 * MiB, cpus: 1, rom, pace: 'virtual' });
    const exit = await m.run({ timeoutMs: 30_000 });
    expect(exit.reason).toBe('halted');
    m.close();
  });
});
