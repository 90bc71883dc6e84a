import { afterEach, describe, expect, it, vi } from 'vitest';
import { buildRom } from '../support/asm.js';
import { PcMachine, RealtimePacer } from '../../machine/platform/pc.js';

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

describe('realtime pacing (RealtimePacer)', () => {
  /** A pacer whose wall clock the test moves by hand. */
  function pacerAt(slackMs: number): { pacer: RealtimePacer; wall: { ms: number } } {
    const wall = { ms: 1000 };
    vi.spyOn(performance, 'now').mockImplementation(() => wall.ms);
    return { pacer: new RealtimePacer(slackMs), wall };
  }
  afterEach(() => vi.restoreAllMocks());

  it('without slack, sleeps until each deadline is due in wall time', () => {
    const { pacer, wall } = pacerAt(0);
    expect(pacer.msUntil(1_000_000, 0)).toBeCloseTo(1);
    wall.ms += 1;
    expect(pacer.msUntil(2_000_000, 1_000_000)).toBeCloseTo(1);
  });

  it('with slack, one wake-up covers every deadline inside a slack period, and lateness never accumulates', () => {
    const { pacer, wall } = pacerAt(4);
    // The 1 ms tick is slept to the 4 ms boundary...
    expect(pacer.msUntil(1_000_000, 0)).toBeCloseTo(4);
    wall.ms += 4;
    // ...where the ticks at 2, 3 and 4 ms are already due: no sleep between them.
    for (const t of [2, 3, 4]) expect(pacer.msUntil(t * 1_000_000, (t - 1) * 1_000_000)).toBeLessThanOrEqual(0);
    // The tick at 5 ms waits for the 8 ms boundary, anchored to the start, not to the late wake-up.
    wall.ms += 0.3;
    expect(pacer.msUntil(5_000_000, 4_000_000)).toBeCloseTo(3.7);
  });

  it('a machine running far behind the wall clock re-anchors instead of racing', () => {
    const { pacer, wall } = pacerAt(4);
    pacer.msUntil(0, 0);
    wall.ms += 500;
    expect(pacer.msUntil(1_000_000, 0)).toBeCloseTo(1);
  });
});
