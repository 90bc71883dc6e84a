import { describe, expect, it } from 'vitest';
import { Timeline } from '../../machine/clock.js';
import { Pit8254, PIT_HZ } from '../../machine/devices/pit8254.js';
import { Pic8259 } from '../../machine/devices/pic8259.js';
import { StateError } from '../../machine/state.js';
import { cloneState, RecordingIrq } from './helpers.js';

const US = 1_000;
const MS = 1_000_000;
const S = 1_000_000_000;

function setup(stuck = false) {
  const tl = new Timeline();
  const irq = new RecordingIrq();
  const pit = new Pit8254({ clock: tl, irq0: irq, stuck });
  return { tl, irq, pit };
}

/** Program channel `ch` in `mode` with lo/hi access and `count`. */
function program(pit: Pit8254, ch: number, mode: number, count: number): void {
  pit.ioWrite(0x43, 1, (ch << 6) | 0x30 | (mode << 1));
  pit.ioWrite(0x40 + ch, 1, count & 0xff);
  pit.ioWrite(0x40 + ch, 1, (count >> 8) & 0xff);
}

function latchAndRead(pit: Pit8254, ch: number): number {
  pit.ioWrite(0x43, 1, ch << 6); // counter latch command
  const lo = pit.ioRead(0x40 + ch, 1);
  const hi = pit.ioRead(0x40 + ch, 1);
  return lo | (hi << 8);
}

const ticksAt = (ns: number) => Math.floor((ns * PIT_HZ) / S);

describe('Pit8254', () => {
  it('mode 2: count read back decreases with virtual time and wraps at the period', () => {
    const { tl, pit } = setup();
    program(pit, 0, 2, 1193);
    expect(latchAndRead(pit, 0)).toBe(1193);
    tl.advanceTo(100 * US);
    expect(latchAndRead(pit, 0)).toBe(1193 - ticksAt(100 * US));
    tl.advanceTo(1500 * US); // 1789 ticks: one full period plus 596
    expect(latchAndRead(pit, 0)).toBe(1193 - (ticksAt(1500 * US) % 1193));
  });

  it('mode 2: IRQ0 rising edges arrive at the programmed rate, even across one big time jump', () => {
    const { tl, irq, pit } = setup();
    program(pit, 0, 2, 1193); // ~1000.15 Hz
    const before = irq.rises;
    tl.advanceTo(1 * S);
    expect(irq.rises - before).toBe(1000);
    // Edge timing: the 1001st edge comes at tick 1001*1193.
    const t1001 = Math.ceil((1001 * 1193 * S) / PIT_HZ);
    tl.advanceTo(t1001 - 1);
    expect(irq.rises - before).toBe(1000);
    tl.advanceTo(t1001);
    expect(irq.rises - before).toBe(1001);
  });

  it('drives the PIC: IRQ0 delivers vector 0x20 every period', () => {
    const tl = new Timeline();
    const pic = new Pic8259();
    const pit = new Pit8254({ clock: tl, irq0: pic.irqLine(0) });
    pic.ioWrite(0x20, 1, 0x11);
    pic.ioWrite(0x21, 1, 0x20);
    pic.ioWrite(0x21, 1, 0x04);
    pic.ioWrite(0x21, 1, 0x01);
    pic.ioWrite(0x21, 1, 0xfe);
    program(pit, 0, 2, 11932); // 100 Hz
    let ticks = 0;
    // 11932 ticks = 10.00015 ms, so the 10th edge lands just after 100 ms.
    for (let t = 0; t <= 101 * MS; t += 100 * US) {
      tl.advanceTo(t);
      if (pic.hasInterrupt()) {
        expect(pic.acknowledge()).toBe(0x20);
        pic.ioWrite(0x20, 1, 0x20);
        ticks++;
      }
    }
    expect(ticks).toBe(10);
  });

  it('mode 3: square wave visible in the read-back status OUT bit, half period high', () => {
    const { tl, irq, pit } = setup();
    program(pit, 0, 3, 1000);
    const status = () => {
      pit.ioWrite(0x43, 1, 0xe2); // read-back: status only, channel 0
      return pit.ioRead(0x40, 1);
    };
    expect(status()).toBe(0x80 | 0x30 | (3 << 1));
    tl.advanceTo(Math.ceil((600 * S) / PIT_HZ)); // 600 ticks: second half, low
    expect(status() & 0x80).toBe(0);
    expect(irq.level).toBe(false);
    const rises = irq.rises;
    tl.advanceTo(Math.ceil((1000 * S) / PIT_HZ));
    expect(status() & 0x80).toBe(0x80);
    expect(irq.rises).toBe(rises + 1);
    // Mode 3 counts down by two.
    tl.advanceTo(Math.ceil((1100 * S) / PIT_HZ));
    expect(latchAndRead(pit, 0)).toBe(1000 - 200);
  });

  it('mode 0: one rising edge at terminal count, then the counter wraps without more edges', () => {
    const { tl, irq, pit } = setup();
    program(pit, 0, 0, 500);
    expect(irq.level).toBe(false); // mode 0 OUT starts low
    const rises = irq.rises;
    tl.advanceTo(Math.ceil((499 * S) / PIT_HZ));
    expect(irq.rises).toBe(rises);
    tl.advanceTo(Math.ceil((500 * S) / PIT_HZ));
    expect(irq.rises).toBe(rises + 1);
    expect(irq.level).toBe(true);
    tl.advanceTo(200 * MS);
    expect(irq.rises).toBe(rises + 1);
    expect(latchAndRead(pit, 0)).toBe((500 - ticksAt(200 * MS)) & 0xffff);
    expect(tl.nextDeadline()).toBe(Infinity);
  });

  it('count 0 means 65536 (18.2 Hz)', () => {
    const { tl, irq, pit } = setup();
    program(pit, 0, 2, 0);
    const r = irq.rises;
    tl.advanceTo(1 * S);
    expect(irq.rises - r).toBe(Math.floor(PIT_HZ / 65536));
  });

  it('lobyte-only and hibyte-only access modes and the lo/hi read flip-flop', () => {
    const { tl, pit } = setup();
    pit.ioWrite(0x43, 1, 0x10); // ch0, LSB only, mode 0
    pit.ioWrite(0x40, 1, 0x80);
    expect(pit.ioRead(0x40, 1)).toBe(0x80);
    pit.ioWrite(0x43, 1, 0x20); // ch0, MSB only, mode 0
    pit.ioWrite(0x40, 1, 0x02);
    expect(pit.ioRead(0x40, 1)).toBe(0x02);
    tl.advanceTo(1 * MS);
    // lo/hi read without latch: two reads give lo then hi of the live count
    pit.ioWrite(0x43, 1, 0x30);
    pit.ioWrite(0x40, 1, 0x34);
    pit.ioWrite(0x40, 1, 0x12);
    expect(pit.ioRead(0x40, 1)).toBe(0x34);
    expect(pit.ioRead(0x40, 1)).toBe(0x12);
  });

  it('counter latch holds the value until both bytes are read; a second latch is ignored', () => {
    const { tl, pit } = setup();
    program(pit, 0, 2, 5000);
    tl.advanceTo(1 * MS);
    pit.ioWrite(0x43, 1, 0x00);
    tl.advanceTo(2 * MS);
    pit.ioWrite(0x43, 1, 0x00); // ignored: already latched
    const lo = pit.ioRead(0x40, 1);
    const hi = pit.ioRead(0x40, 1);
    expect(lo | (hi << 8)).toBe(5000 - ticksAt(1 * MS));
    expect(latchAndRead(pit, 0)).toBe(5000 - ticksAt(2 * MS));
  });

  it('read-back latches status then count, and reports null count before the count is written', () => {
    const { tl, pit } = setup();
    pit.ioWrite(0x43, 1, 0xb4); // ch2, lo/hi, mode 2
    pit.ioWrite(0x43, 1, 0xe8); // read-back status, ch2
    expect(pit.ioRead(0x42, 1)).toBe(0x80 | 0x40 | 0x30 | 0x04);
    pit.ioWrite(0x42, 1, 0x00);
    pit.ioWrite(0x42, 1, 0x10); // 4096
    pit.ioWrite(0x61, 1, 0x01); // gate 2 high: counting starts
    tl.advanceTo(1 * MS);
    pit.ioWrite(0x43, 1, 0xc8); // read-back count+status, ch2
    expect(pit.ioRead(0x42, 1) & 0x7f).toBe(0x34); // status first, null count clear
    const lo = pit.ioRead(0x42, 1);
    const hi = pit.ioRead(0x42, 1);
    expect(lo | (hi << 8)).toBe(4096 - ticksAt(1 * MS));
  });

  it('port 0x61: gate 2 starts channel 2, OUT2 in bit 5, refresh toggle in bit 4 follows time', () => {
    const { tl, pit } = setup();
    // The classic calibration loop: ch2 mode 0, gate high, poll OUT2.
    pit.ioWrite(0x61, 1, 0x00);
    program(pit, 2, 0, 1193);
    tl.advanceTo(5 * MS);
    expect(pit.ioRead(0x61, 1) & 0x20).toBe(0); // gate low: not counting
    expect(latchAndRead(pit, 2)).toBe(1193);
    const start = tl.nowNs();
    pit.ioWrite(0x61, 1, 0x01);
    expect(pit.ioRead(0x61, 1) & 0x01).toBe(0x01);
    tl.advanceTo(start + Math.ceil((1192 * S) / PIT_HZ));
    expect(pit.ioRead(0x61, 1) & 0x20).toBe(0);
    tl.advanceTo(start + Math.ceil((1193 * S) / PIT_HZ));
    expect(pit.ioRead(0x61, 1) & 0x20).toBe(0x20);

    const refresh = (ns: number) => {
      tl.advanceTo(ns);
      return pit.ioRead(0x61, 1) & 0x10;
    };
    const period = (18 * S) / PIT_HZ; // ~15.09 us per toggle
    const base = Math.ceil(Math.ceil(tl.nowNs() / period) * period);
    const a = refresh(base + 1);
    const b = refresh(base + Math.ceil(period) + 1);
    expect(a).not.toBe(b);
    expect(pit.speaker().enabled).toBe(false);
    pit.ioWrite(0x61, 1, 0x03);
    expect(pit.speaker()).toEqual({ enabled: true, frequencyHz: PIT_HZ / 1193 });
  });

  it('reprogramming cancels the old schedule', () => {
    const { tl, irq, pit } = setup();
    program(pit, 0, 2, 1193);
    tl.advanceTo(500 * US);
    program(pit, 0, 2, 11932); // now 100 Hz from this instant
    const r = irq.rises;
    tl.advanceTo(500 * US + 100 * MS); // 10th edge due at +100.0015 ms
    expect(irq.rises - r).toBe(9);
    tl.advanceTo(500 * US + 100 * MS + 2 * US);
    expect(irq.rises - r).toBe(10);
  });

  it('BCD counting', () => {
    const { tl, pit } = setup();
    pit.ioWrite(0x43, 1, 0x31); // ch0 lo/hi mode 0 BCD
    pit.ioWrite(0x40, 1, 0x00);
    pit.ioWrite(0x40, 1, 0x10); // 1000 decimal
    tl.advanceTo(Math.ceil((1 * S) / PIT_HZ) * 1 + 1); // 1 tick
    expect(latchAndRead(pit, 0)).toBe(0x0999);
  });

  it('stuck fault: the counter stays at its reload value and IRQ0 never fires', () => {
    const { tl, irq, pit } = setup(true);
    program(pit, 0, 2, 1193);
    tl.advanceTo(1 * S);
    expect(latchAndRead(pit, 0)).toBe(1193);
    expect(irq.rises).toBe(0);
    expect(tl.nextDeadline()).toBe(Infinity);
  });

  it('snapshot round-trip (mid-period, pending latch) continues identically', () => {
    const a = setup();
    program(a.pit, 0, 2, 1193);
    program(a.pit, 2, 3, 3000);
    a.pit.ioWrite(0x61, 1, 0x01);
    a.tl.advanceTo(12_345_678);
    a.pit.ioWrite(0x43, 1, 0x80); // latch ch2, leave it unread
    const saved = cloneState(a.pit.saveState());

    const tl = new Timeline();
    tl.reset(a.tl.nowNs());
    const irq = new RecordingIrq();
    irq.level = a.irq.level;
    const pit = new Pit8254({ clock: tl, irq0: irq });
    tl.reset(a.tl.nowNs()); // drop the fresh device's own timer, as the platform does before restore
    pit.restoreState(saved);
    const b = { tl, irq, pit };

    const obs = (m: typeof a) => {
      const r0 = m.irq.rises;
      const out: number[] = [latchAndRead(m.pit, 2)];
      for (let i = 1; i <= 5; i++) {
        m.tl.advanceTo(12_345_678 + i * 777_777);
        out.push(latchAndRead(m.pit, 0), latchAndRead(m.pit, 2), m.pit.ioRead(0x61, 1), m.irq.rises - r0);
      }
      return out;
    };
    expect(obs(b)).toEqual(obs(a));
  });

  it('restore rejects bad records, naming the field', () => {
    const { pit } = setup();
    const s = pit.saveState();
    const bad = cloneState(s);
    (bad['channels'] as { reload: number }[])[1]!.reload = 0;
    expect(() => pit.restoreState(bad)).toThrow(StateError);
    expect(() => pit.restoreState(bad)).toThrow(/channels\[1\].*'reload'/);
    expect(() => pit.restoreState({ ...s, nextTick: 'soon' })).toThrow(/'nextTick'/);
    expect(() => pit.restoreState({ ...s, version: 2 })).toThrow(/'version'/);
  });
});
