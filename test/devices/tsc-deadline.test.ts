import { describe, expect, it } from 'vitest';
import { Timeline } from '../../machine/clock.js';
import { LocalApic } from '../../machine/devices/lapic.js';
import { StateError } from '../../machine/state.js';

const EOI = 0xb0;
const SVR = 0xf0;
const LVT_TIMER = 0x320;
const TIMER_INIT = 0x380;
const VECTOR = 0x41;
const DEADLINE_MODE = 2 << 17;

function setup() {
  const tl = new Timeline();
  const apic = new LocalApic({ clock: tl, apicId: 0, bsp: true });
  apic.mmioWrite(SVR, 4, 0x1ff);
  const taken = (): number[] => {
    const got: number[] = [];
    while (apic.hasInterrupt()) {
      got.push(apic.acknowledge());
      apic.mmioWrite(EOI, 4, 0);
    }
    return got;
  };
  return { tl, apic, taken };
}

describe('LAPIC TSC-deadline mode (SDM 10.5.4.1)', () => {
  it('fires once at the due time, then IA32_TSC_DEADLINE reads 0; 0 disarms', () => {
    const { tl, apic, taken } = setup();
    apic.mmioWrite(LVT_TIMER, 4, VECTOR | DEADLINE_MODE);
    apic.tscDeadline.write(5000n, 2500);
    expect(apic.tscDeadline.deadline).toBe(5000n);
    tl.advanceTo(2499);
    expect(taken()).toEqual([]);
    tl.advanceTo(2500);
    expect(taken()).toEqual([VECTOR]);
    expect(apic.tscDeadline.deadline).toBe(0n);
    tl.advanceTo(10_000);
    expect(taken()).toEqual([]);
    apic.tscDeadline.write(30_000n, 15_000);
    apic.tscDeadline.write(0n, 0);
    tl.advanceTo(20_000);
    expect(taken()).toEqual([]);
  });

  it('a deadline already past fires at the next time step; a masked timer fires without an interrupt', () => {
    const { tl, apic, taken } = setup();
    tl.advanceTo(1000);
    apic.mmioWrite(LVT_TIMER, 4, VECTOR | DEADLINE_MODE);
    apic.tscDeadline.write(10n, 5);
    tl.advanceTo(1000);
    expect(taken()).toEqual([VECTOR]);
    apic.mmioWrite(LVT_TIMER, 4, VECTOR | DEADLINE_MODE | (1 << 16));
    apic.tscDeadline.write(4000n, 2000);
    tl.advanceTo(2000);
    expect(taken()).toEqual([]);
    expect(apic.tscDeadline.deadline).toBe(0n);
  });

  it('ignores writes outside deadline mode, ignores the initial count inside it, and a mode switch disarms', () => {
    const { tl, apic, taken } = setup();
    apic.mmioWrite(LVT_TIMER, 4, VECTOR); // one-shot
    apic.tscDeadline.write(4000n, 2000);
    expect(apic.tscDeadline.deadline).toBe(0n);
    apic.mmioWrite(LVT_TIMER, 4, VECTOR | DEADLINE_MODE);
    apic.mmioWrite(TIMER_INIT, 4, 100);
    tl.advanceTo(5000);
    expect(taken()).toEqual([]);
    apic.tscDeadline.write(20_000n, 10_000);
    // Unmasking or re-writing the same mode keeps it armed; leaving the mode disarms.
    apic.mmioWrite(LVT_TIMER, 4, VECTOR | DEADLINE_MODE);
    expect(apic.tscDeadline.deadline).toBe(20_000n);
    apic.mmioWrite(LVT_TIMER, 4, VECTOR | (1 << 16));
    expect(apic.tscDeadline.deadline).toBe(0n);
    tl.advanceTo(20_000);
    expect(taken()).toEqual([]);
  });

  it('an armed deadline is saved with the APIC and fires at the same time after a restore; bad records change nothing', () => {
    const a = setup();
    a.apic.mmioWrite(LVT_TIMER, 4, VECTOR | DEADLINE_MODE);
    a.tl.advanceTo(100);
    a.apic.tscDeadline.write(9000n, 4500);
    const saved = a.apic.saveState();
    const b = setup();
    b.tl.advanceTo(100);
    b.apic.restoreState(structuredClone(saved));
    expect(b.apic.tscDeadline.deadline).toBe(9000n);
    b.tl.advanceTo(4499);
    expect(b.taken()).toEqual([]);
    b.tl.advanceTo(4500);
    expect(b.taken()).toEqual([VECTOR]);

    const c = setup();
    c.apic.mmioWrite(LVT_TIMER, 4, VECTOR | DEADLINE_MODE);
    c.apic.tscDeadline.write(7000n, 3500);
    for (const bad of [{ value: 'x', dueNs: 1, deadlineMode: true }, { value: '1', dueNs: -1, deadlineMode: true }, { value: (1n << 64n).toString(), dueNs: null, deadlineMode: true }, 'nope']) {
      expect(() => c.apic.restoreState({ ...structuredClone(saved), tscDeadline: bad })).toThrow(StateError);
      expect(c.apic.tscDeadline.deadline).toBe(7000n);
    }
    // Records from before deadline mode: disarmed.
    const old = structuredClone(saved);
    delete old['tscDeadline'];
    c.apic.restoreState(old);
    expect(c.apic.tscDeadline.deadline).toBe(0n);
  });
});
