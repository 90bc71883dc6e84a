import { describe, expect, it } from 'vitest';
import { Pic8259 } from '../../machine/devices/pic8259.js';
import { StateError } from '../../machine/state.js';
import { cloneState } from './helpers.js';

/** The classic BIOS/OS init: ICW1 edge+ICW4, ICW2 vector base, ICW3 cascade, ICW4 8086 mode. */
function init(pic: Pic8259, masterBase = 0x20, slaveBase = 0x70, icw4 = 0x01): void {
  pic.ioWrite(0x20, 1, 0x11);
  pic.ioWrite(0x21, 1, masterBase);
  pic.ioWrite(0x21, 1, 0x04); // slave on IR2
  pic.ioWrite(0x21, 1, icw4);
  pic.ioWrite(0xa0, 1, 0x11);
  pic.ioWrite(0xa1, 1, slaveBase);
  pic.ioWrite(0xa1, 1, 0x02); // cascade identity
  pic.ioWrite(0xa1, 1, icw4);
  pic.ioWrite(0x21, 1, 0x00); // unmask everything
  pic.ioWrite(0xa1, 1, 0x00);
}

const readIsr = (pic: Pic8259, cmd: number) => {
  pic.ioWrite(cmd, 1, 0x0b); // OCW3: read ISR
  const v = pic.ioRead(cmd, 1);
  pic.ioWrite(cmd, 1, 0x0a); // back to IRR
  return v;
};

describe('Pic8259', () => {
  it('never raises INTR before initialisation, and ICW1 discards edges latched before it', () => {
    const pic = new Pic8259();
    pic.irqLine(0).pulse();
    pic.setIrq(1, true);
    expect(pic.hasInterrupt()).toBe(false);
    init(pic);
    expect(pic.hasInterrupt()).toBe(false);
    // IRQ1 is still high but needs a fresh rising edge after ICW1.
    pic.setIrq(1, false);
    pic.setIrq(1, true);
    expect(pic.hasInterrupt()).toBe(true);
    expect(pic.acknowledge()).toBe(0x21);
  });

  it('IRQ0 after init acknowledges as vector 0x20, sets ISR, clears IRR, and EOI re-enables it', () => {
    const pic = new Pic8259();
    init(pic);
    pic.irqLine(0).pulse();
    expect(pic.ioRead(0x20, 1)).toBe(0x01); // IRR
    expect(pic.hasInterrupt()).toBe(true);
    expect(pic.acknowledge()).toBe(0x20);
    expect(pic.hasInterrupt()).toBe(false);
    expect(pic.ioRead(0x20, 1)).toBe(0x00);
    expect(readIsr(pic, 0x20)).toBe(0x01);

    // A second tick while IRQ0 is in service is latched but not delivered.
    pic.irqLine(0).pulse();
    expect(pic.hasInterrupt()).toBe(false);
    pic.ioWrite(0x20, 1, 0x20); // non-specific EOI
    expect(readIsr(pic, 0x20)).toBe(0x00);
    expect(pic.hasInterrupt()).toBe(true);
    expect(pic.acknowledge()).toBe(0x20);
  });

  it('delivers in priority order and lets a higher priority request nest', () => {
    const pic = new Pic8259();
    init(pic);
    pic.irqLine(3).pulse();
    pic.irqLine(1).pulse();
    expect(pic.acknowledge()).toBe(0x21);
    // IRQ3 is lower priority than the in-service IRQ1: held back.
    expect(pic.hasInterrupt()).toBe(false);
    pic.irqLine(0).pulse();
    expect(pic.acknowledge()).toBe(0x20); // IRQ0 nests over IRQ1
    expect(readIsr(pic, 0x20)).toBe(0x03);
    pic.ioWrite(0x20, 1, 0x20); // EOI clears highest priority (IRQ0)
    expect(readIsr(pic, 0x20)).toBe(0x02);
    pic.ioWrite(0x20, 1, 0x61); // specific EOI for IRQ1
    expect(pic.acknowledge()).toBe(0x23);
  });

  it('masks through OCW1 and reads the mask back', () => {
    const pic = new Pic8259();
    init(pic);
    pic.ioWrite(0x21, 1, 0xfe);
    expect(pic.ioRead(0x21, 1)).toBe(0xfe);
    pic.irqLine(4).pulse();
    expect(pic.hasInterrupt()).toBe(false);
    expect(pic.ioRead(0x20, 1)).toBe(0x10); // still requested in IRR
    pic.ioWrite(0x21, 1, 0xee);
    expect(pic.acknowledge()).toBe(0x24);
  });

  it('cascades IRQ8 through master IR2 to vector 0x70', () => {
    const pic = new Pic8259();
    init(pic);
    pic.irqLine(8).pulse();
    expect(pic.hasInterrupt()).toBe(true);
    expect(pic.acknowledge()).toBe(0x70);
    expect(readIsr(pic, 0x20)).toBe(0x04);
    expect(readIsr(pic, 0xa0)).toBe(0x01);
    pic.irqLine(14).pulse();
    expect(pic.hasInterrupt()).toBe(false); // slave busy with higher-priority IRQ8
    pic.ioWrite(0xa0, 1, 0x20);
    pic.ioWrite(0x20, 1, 0x20);
    expect(pic.acknowledge()).toBe(0x76);
  });

  it('answers a spurious INTA with IRQ7 and no ISR bit; slave spurious gives IRQ15 with master IR2 in service', () => {
    const pic = new Pic8259();
    init(pic);
    expect(pic.acknowledge()).toBe(0x27);
    expect(readIsr(pic, 0x20)).toBe(0x00);

    pic.irqLine(9).pulse(); // latches master IR2
    pic.ioWrite(0xa1, 1, 0x02); // slave masks IRQ9 before the CPU acknowledges
    expect(pic.hasInterrupt()).toBe(true);
    expect(pic.acknowledge()).toBe(0x77);
    expect(readIsr(pic, 0xa0)).toBe(0x00);
    expect(readIsr(pic, 0x20)).toBe(0x04);
  });

  it('treats ELCR-selected inputs as level triggered, with PIIX masks', () => {
    const pic = new Pic8259();
    init(pic);
    pic.ioWrite(0x4d0, 1, 0xff);
    pic.ioWrite(0x4d1, 1, 0xff);
    expect(pic.ioRead(0x4d0, 1)).toBe(0xf8);
    expect(pic.ioRead(0x4d1, 1)).toBe(0xde);
    pic.ioWrite(0x4d1, 1, 0x04); // IRQ10 level

    pic.setIrq(10, true);
    expect(pic.acknowledge()).toBe(0x72);
    pic.ioWrite(0xa0, 1, 0x20);
    pic.ioWrite(0x20, 1, 0x20);
    // Still asserted after EOI: requested again without a new edge.
    expect(pic.hasInterrupt()).toBe(true);
    expect(pic.acknowledge()).toBe(0x72);
    // The handler quiets the device before EOI: nothing more is requested.
    pic.setIrq(10, false);
    pic.ioWrite(0xa0, 1, 0x20);
    pic.ioWrite(0x20, 1, 0x20);
    expect(pic.hasInterrupt()).toBe(false);
    expect(pic.ioRead(0xa0, 1)).toBe(0x00);
  });

  it('supports auto-EOI, poll mode and rotation commands', () => {
    const pic = new Pic8259();
    init(pic, 0x08, 0x70, 0x03); // AEOI
    pic.irqLine(5).pulse();
    expect(pic.acknowledge()).toBe(0x0d);
    expect(readIsr(pic, 0x20)).toBe(0x00);

    pic.irqLine(6).pulse();
    pic.ioWrite(0x20, 1, 0x0c); // OCW3 poll
    expect(pic.ioRead(0x20, 1)).toBe(0x86);
    pic.ioWrite(0x20, 1, 0x0c);
    expect(pic.ioRead(0x20, 1)).toBe(0x00); // nothing pending

    // Set priority so IRQ4 is lowest: IRQ5 now beats IRQ0.
    pic.ioWrite(0x20, 1, 0xc4);
    pic.irqLine(0).pulse();
    pic.irqLine(5).pulse();
    expect(pic.acknowledge()).toBe(0x0d);
  });

  it('reports INTR changes through the callback', () => {
    const seen: boolean[] = [];
    const pic = new Pic8259({ onIntrChange: (l) => seen.push(l) });
    init(pic);
    pic.irqLine(1).pulse();
    pic.acknowledge();
    expect(seen).toEqual([true, false]);
  });

  it('snapshot round-trip continues identically', () => {
    const a = new Pic8259();
    init(a);
    a.ioWrite(0x4d1, 1, 0x08);
    a.irqLine(3).pulse();
    a.irqLine(11).setLevel(true);
    a.irqLine(8).pulse();
    expect(a.acknowledge()).toBe(0x70);

    const b = new Pic8259();
    b.restoreState(cloneState(a.saveState()));
    for (const pic of [a, b]) {
      pic.ioWrite(0xa0, 1, 0x20);
      pic.ioWrite(0x20, 1, 0x20);
    }
    const run = (p: Pic8259) => [p.acknowledge(), p.acknowledge(), p.acknowledge(), p.chips()];
    expect(run(b)).toEqual(run(a));
  });

  it('restore rejects bad records, naming the field', () => {
    const pic = new Pic8259();
    const good = pic.saveState();
    expect(() => pic.restoreState({ ...good, version: 99 })).toThrow(StateError);
    expect(() => pic.restoreState({ ...good, version: 99 })).toThrow(/'version'/);
    const bad = cloneState(good);
    (bad['chips'] as { irr: unknown }[])[1]!.irr = 'x';
    expect(() => pic.restoreState(bad)).toThrow(/pic\.slave: state field 'irr'/);
    // A failed restore leaves the device as it was.
    init(pic);
    pic.irqLine(5).pulse();
    expect(() => pic.restoreState(bad)).toThrow(StateError);
    expect(pic.acknowledge()).toBe(0x25);
    const bad2 = cloneState(good);
    (bad2['chips'] as { elcr: number }[])[0]!.elcr = 0x01;
    expect(() => pic.restoreState(bad2)).toThrow(/'elcr'/);
  });
});
