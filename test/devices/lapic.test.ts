import { describe, expect, it } from 'vitest';
import { Timeline } from '../../machine/clock.js';
import { LocalApic, type IpiMessage, type LocalApicOptions } from '../../machine/devices/lapic.js';
import { StateError } from '../../machine/state.js';
import { cloneState } from './helpers.js';

const ID = 0x20;
const VER = 0x30;
const TPR = 0x80;
const PPR = 0xa0;
const EOI = 0xb0;
const LDR = 0xd0;
const DFR = 0xe0;
const SVR = 0xf0;
const ISR0 = 0x100;
const TMR0 = 0x180;
const IRR0 = 0x200;
const ESR = 0x280;
const ICR_LO = 0x300;
const ICR_HI = 0x310;
const LVT_TIMER = 0x320;
const LVT_LINT0 = 0x350;
const LVT_LINT1 = 0x360;
const LVT_ERROR = 0x370;
const TIMER_INIT = 0x380;
const TIMER_CUR = 0x390;
const TIMER_DIV = 0x3e0;

function setup(opts: Partial<LocalApicOptions> = {}) {
  const tl = new Timeline();
  const ipis: IpiMessage[] = [];
  const events: string[] = [];
  const apic = new LocalApic({
    clock: tl,
    apicId: 0,
    bsp: true,
    onIpi: (m) => ipis.push(m),
    onLevelEoi: (v) => events.push(`eoi:${v}`),
    cpu: {
      onInit: () => events.push('init'),
      onStartup: (v) => events.push(`sipi:${v}`),
      onNmi: () => events.push('nmi'),
    },
    ...opts,
  });
  const rd = (o: number) => apic.mmioRead(o, 4);
  const wr = (o: number, v: number) => apic.mmioWrite(o, 4, v);
  return { tl, apic, ipis, events, rd, wr };
}

function enabled(opts: Partial<LocalApicOptions> = {}) {
  const s = setup(opts);
  s.wr(SVR, 0x1ff);
  return s;
}

/** Run the CPU side for a while: take every deliverable interrupt, EOI it, record the vector. */
function drain(apic: LocalApic): number[] {
  const got: number[] = [];
  while (apic.hasInterrupt()) {
    got.push(apic.acknowledge());
    apic.mmioWrite(EOI, 4, 0);
  }
  return got;
}

describe('LocalApic', () => {
  it('has SDM reset values; the BSP has LINT0 in ExtINT so the 8259 reaches it', () => {
    const { rd, apic } = setup({ apicId: 3 });
    expect(rd(ID)).toBe(0x03000000);
    expect(rd(VER)).toBe(0x00050014);
    expect(rd(SVR)).toBe(0xff);
    expect(rd(DFR)).toBe(0xffffffff);
    expect(rd(LVT_TIMER)).toBe(0x10000);
    expect(rd(LVT_LINT0)).toBe(0x700);
    expect(rd(LVT_LINT1)).toBe(0x10000);
    expect(apic.extIntEnabled()).toBe(true);
    expect(apic.softwareEnabled()).toBe(false);

    const ap = setup({ apicId: 1, bsp: false });
    expect(ap.rd(LVT_LINT0)).toBe(0x10000);
    expect(ap.apic.extIntEnabled()).toBe(false);
    ap.apic.setHardwareEnabled(false);
    expect(ap.apic.extIntEnabled()).toBe(true); // globally disabled: INTR pin goes straight through
  });

  it('a software-disabled APIC delivers nothing and forces LVT mask bits', () => {
    const { apic, rd, wr } = setup();
    apic.acceptIpi(0x40);
    expect(apic.hasInterrupt()).toBe(false);
    wr(LVT_TIMER, 0x30);
    expect(rd(LVT_TIMER)).toBe(0x10030);
    wr(SVR, 0x1ff);
    expect(apic.hasInterrupt()).toBe(true); // the IRR bit was held
    wr(LVT_LINT1, 0x400);
    expect(rd(LVT_LINT1)).toBe(0x400);
    wr(SVR, 0xff); // disabling masks everything, including LINT0
    expect(rd(LVT_LINT1)).toBe(0x10400);
    expect(rd(LVT_LINT0)).toBe(0x10700);
    expect(apic.extIntEnabled()).toBe(false);
  });

  it('TPR masks priority classes at or below it; PPR follows ISR', () => {
    const { apic, rd, wr } = enabled();
    wr(TPR, 0x60);
    apic.acceptIpi(0x65);
    expect(apic.hasInterrupt()).toBe(false); // same class as TPR
    expect(rd(IRR0 + 0x30) >>> 0).toBe(1 << 5); // vector 0x65 = word 3, bit 5
    wr(TPR, 0x50);
    expect(apic.hasInterrupt()).toBe(true);
    expect(apic.acknowledge()).toBe(0x65);
    expect(rd(PPR)).toBe(0x60); // ISR class 6 beats TPR 0x50
    expect(rd(ISR0 + 0x30)).toBe(1 << 5);
    wr(EOI, 0);
    expect(rd(PPR)).toBe(0x50);
    apic.writeCr8(0x7);
    expect(rd(TPR)).toBe(0x70);
    expect(apic.readCr8()).toBe(7);
  });

  it('higher classes preempt, lower ones wait, and EOI retires the highest in-service vector first', () => {
    const { apic, rd, wr } = enabled();
    apic.acceptIpi(0x40);
    expect(apic.acknowledge()).toBe(0x40);
    apic.acceptIpi(0x45); // same class: must wait
    expect(apic.hasInterrupt()).toBe(false);
    apic.acceptIpi(0x80);
    expect(apic.acknowledge()).toBe(0x80); // nests
    expect(rd(ISR0 + 0x40)).toBe(1);
    expect(rd(ISR0 + 0x20)).toBe(1);
    wr(EOI, 0);
    expect(rd(ISR0 + 0x40)).toBe(0);
    expect(rd(ISR0 + 0x20)).toBe(1);
    expect(apic.hasInterrupt()).toBe(false);
    wr(EOI, 0);
    expect(apic.acknowledge()).toBe(0x45);
  });

  it('acknowledge with nothing deliverable returns the spurious vector and changes nothing', () => {
    const { apic, rd, wr } = enabled();
    wr(SVR, 0x1ef);
    expect(apic.acknowledge()).toBe(0xef);
    wr(TPR, 0xf0);
    apic.acceptIpi(0x90);
    expect(apic.acknowledge()).toBe(0xef);
    expect(rd(ISR0 + 0x40)).toBe(0);
    expect(rd(IRR0 + 0x40)).toBe(1 << 16);
  });

  it('level-triggered vectors set TMR and broadcast EOI', () => {
    const { apic, rd, events } = enabled();
    apic.acceptIpi(0x51, 'level');
    expect(rd(TMR0 + 0x20)).toBe(1 << 17);
    apic.acknowledge();
    apic.mmioWrite(EOI, 4, 0);
    apic.acceptIpi(0x52);
    apic.acknowledge();
    apic.mmioWrite(EOI, 4, 0);
    expect(events).toEqual(['eoi:81']);
  });

  it('one-shot timer: current count runs down with virtual time and the interrupt fires at zero', () => {
    const { apic, tl, rd, wr } = enabled();
    wr(TIMER_DIV, 0x0b); // divide by 1
    wr(LVT_TIMER, 0x30);
    wr(TIMER_INIT, 1000);
    expect(rd(TIMER_CUR)).toBe(1000);
    tl.advanceTo(400);
    expect(rd(TIMER_CUR)).toBe(600);
    tl.advanceTo(999);
    expect(apic.hasInterrupt()).toBe(false);
    tl.advanceTo(1000);
    expect(rd(TIMER_CUR)).toBe(0);
    expect(drain(apic)).toEqual([0x30]);
    tl.advanceTo(10_000);
    expect(drain(apic)).toEqual([]);
  });

  it('periodic timer with divide-by-2 fires every 2 us and keeps its cadence when time jumps', () => {
    const { apic, tl, rd, wr } = enabled();
    wr(TIMER_DIV, 0x00); // divide by 2
    wr(LVT_TIMER, 0x20031); // periodic, vector 0x31
    wr(TIMER_INIT, 1000);
    let n = 0;
    for (let t = 0; t <= 20_000; t += 100) {
      tl.advanceTo(t);
      n += drain(apic).length;
    }
    expect(n).toBe(10);
    tl.advanceTo(20_500);
    expect(rd(TIMER_CUR)).toBe(1000 - 250);
    // A 1 ms jump coalesces into one pending vector (IRR is a bit), the next expiry stays on the grid.
    tl.advanceTo(1_020_500);
    expect(drain(apic)).toEqual([0x31]);
    tl.advanceTo(1_021_999);
    expect(drain(apic)).toEqual([]);
    tl.advanceTo(1_022_000);
    expect(drain(apic)).toEqual([0x31]);
  });

  it('timer uses the configured bus frequency; a masked timer counts but never interrupts', () => {
    const { apic, tl, rd, wr } = enabled({ busFrequencyHz: 100_000_000 });
    wr(TIMER_DIV, 0x0b);
    wr(LVT_TIMER, 0x10040); // masked
    wr(TIMER_INIT, 100); // 100 counts at 100 MHz = 1 us
    tl.advanceTo(500);
    expect(rd(TIMER_CUR)).toBe(50);
    tl.advanceTo(5_000);
    expect(apic.hasInterrupt()).toBe(false);
    wr(LVT_TIMER, 0x40);
    wr(TIMER_INIT, 100);
    tl.advanceTo(5_999);
    expect(apic.hasInterrupt()).toBe(false);
    tl.advanceTo(6_000);
    expect(drain(apic)).toEqual([0x40]);
  });

  it('ICR writes produce IPI messages; illegal vectors set ESR and the error LVT fires', () => {
    const { apic, ipis, rd, wr } = enabled({ apicId: 2 });
    wr(ICR_HI, 0x05000000);
    wr(ICR_LO, 0x00004500); // INIT, assert, physical
    wr(ICR_LO, 0x00000608); // STARTUP vector 8
    wr(ICR_LO, 0x000c0041); // fixed 0x41 to all excluding self
    expect(ipis).toEqual([
      { source: 2, destination: 5, destinationMode: 'physical', destinationShorthand: 'none', mode: 'init', vector: 0, level: true, trigger: 'edge' },
      { source: 2, destination: 5, destinationMode: 'physical', destinationShorthand: 'none', mode: 'startup', vector: 8, level: false, trigger: 'edge' },
      { source: 2, destination: 5, destinationMode: 'physical', destinationShorthand: 'all-excluding-self', mode: 'fixed', vector: 0x41, level: false, trigger: 'edge' },
    ]);
    expect(rd(ICR_LO) & 0x1000).toBe(0); // delivery status idle

    wr(LVT_ERROR, 0xfe);
    wr(ICR_LO, 0x00000005); // fixed vector 5: illegal
    expect(ipis.length).toBe(3);
    expect(drain(apic)).toEqual([0xfe]);
    expect(rd(ESR)).toBe(0); // latched only by an ESR write
    wr(ESR, 0);
    expect(rd(ESR)).toBe(0x20);
    rd(0x2f0); // CMCI is not implemented: illegal register
    wr(ESR, 0);
    expect(rd(ESR)).toBe(0x80);
  });

  it('routes with accepts(): physical, broadcast, logical flat/cluster and shorthands', () => {
    const a = enabled({ apicId: 1 }).apic;
    a.mmioWrite(LDR, 4, 0x02000000);
    const msg = (m: Partial<IpiMessage>): IpiMessage => ({
      source: 0,
      destination: 0,
      destinationMode: 'physical',
      destinationShorthand: 'none',
      mode: 'fixed',
      vector: 0x40,
      level: true,
      trigger: 'edge',
      ...m,
    });
    expect(a.accepts(msg({ destination: 1 }))).toBe(true);
    expect(a.accepts(msg({ destination: 2 }))).toBe(false);
    expect(a.accepts(msg({ destination: 0xff }))).toBe(true);
    expect(a.accepts(msg({ destinationMode: 'logical', destination: 0x03 }))).toBe(true);
    expect(a.accepts(msg({ destinationMode: 'logical', destination: 0x01 }))).toBe(false);
    a.mmioWrite(DFR, 4, 0x0fffffff); // cluster model
    a.mmioWrite(LDR, 4, 0x31000000); // cluster 3, member bit 0
    expect(a.accepts(msg({ destinationMode: 'logical', destination: 0x31 }))).toBe(true);
    expect(a.accepts(msg({ destinationMode: 'logical', destination: 0x21 }))).toBe(false);
    expect(a.accepts(msg({ destinationShorthand: 'self', source: 1 }))).toBe(true);
    expect(a.accepts(msg({ destinationShorthand: 'self', source: 0 }))).toBe(false);
    expect(a.accepts(msg({ destinationShorthand: 'all-excluding-self', source: 1 }))).toBe(false);
    expect(a.accepts(msg({ destinationShorthand: 'all-including-self', source: 1 }))).toBe(true);
  });

  it('INIT resets the APIC and SIPI starts a waiting AP once; the BSP ignores SIPI', () => {
    const ap = setup({ apicId: 1, bsp: false });
    ap.wr(SVR, 0x1ff);
    ap.wr(TPR, 0x20);
    ap.apic.acceptInit();
    expect(ap.rd(SVR)).toBe(0xff);
    expect(ap.rd(TPR)).toBe(0);
    expect(ap.rd(ID)).toBe(0x01000000);
    ap.apic.acceptStartup(0x9a);
    ap.apic.acceptStartup(0x9b);
    expect(ap.events).toEqual(['init', 'sipi:154']);

    const bsp = setup();
    bsp.apic.acceptStartup(0x10);
    expect(bsp.events).toEqual([]);
  });

  it('LINT1 as NMI and LINT0 in fixed mode deliver through their LVT', () => {
    const { apic, wr, events } = enabled();
    wr(LVT_LINT1, 0x400);
    apic.setLint(1, true);
    apic.setLint(1, true); // no new edge
    apic.setLint(1, false);
    apic.setLint(1, true);
    expect(events).toEqual(['nmi', 'nmi']);
    wr(LVT_LINT0, 0x0055);
    expect(apic.extIntEnabled()).toBe(false);
    apic.setLint(0, true);
    expect(drain(apic)).toEqual([0x55]);
  });

  it('sub-dword accesses read 0 and are ignored on write (QEMU)', () => {
    const { apic, rd } = enabled();
    expect(apic.mmioRead(VER, 1)).toBe(0);
    apic.mmioWrite(TPR, 2, 0x40);
    expect(rd(TPR)).toBe(0);
  });

  it('snapshot round-trip with a running periodic timer and in-service vectors continues identically', () => {
    const a = enabled({ apicId: 4 });
    a.wr(TIMER_DIV, 0x01); // divide by 4
    a.wr(LVT_TIMER, 0x20060);
    a.wr(TIMER_INIT, 2500);
    a.apic.acceptIpi(0x70);
    a.apic.acknowledge();
    a.apic.acceptIpi(0x50, 'level');
    a.tl.advanceTo(123_456);
    const saved = cloneState(a.apic.saveState());

    const b = setup({ apicId: 4 });
    b.tl.reset(a.tl.nowNs());
    b.apic.restoreState(saved);

    const run = (m: ReturnType<typeof setup>) => {
      const out: number[] = [m.rd(TIMER_CUR), m.rd(PPR)];
      for (let t = 123_456; t < 200_000; t += 3_333) {
        m.tl.advanceTo(t);
        out.push(m.rd(TIMER_CUR), ...drain(m.apic));
      }
      out.push(m.events.length);
      return out;
    };
    expect(run(b)).toEqual(run(a));
  });

  it('restore rejects bad records, naming the field', () => {
    const { apic } = setup();
    const s = apic.saveState();
    expect(() => apic.restoreState({ ...s, irr: [1, 2, 3] })).toThrow(StateError);
    expect(() => apic.restoreState({ ...s, irr: [1, 2, 3] })).toThrow(/lapic@0: state field 'irr'/);
    expect(() => apic.restoreState({ ...s, divideConf: 0x10 })).toThrow(/'divideConf'/);
    expect(() => apic.restoreState({ ...s, lvt: [0, 0, 0, 0, 0, -1] })).toThrow(/'lvt\[5\]'/);
  });
});
