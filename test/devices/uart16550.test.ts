import { describe, expect, it } from 'vitest';
import { Timeline } from '../../machine/clock.js';
import { Uart16550 } from '../../machine/devices/uart16550.js';
import { StateError } from '../../machine/state.js';
import { cloneState, RecordingIrq } from './helpers.js';

const COM1 = 0x3f8;
const THR = COM1;
const RBR = COM1;
const IER = COM1 + 1;
const IIR = COM1 + 2;
const FCR = COM1 + 2;
const LCR = COM1 + 3;
const MCR = COM1 + 4;
const LSR = COM1 + 5;
const MSR = COM1 + 6;
const SCR = COM1 + 7;

function setup(dead = false) {
  const tl = new Timeline();
  const irq = new RecordingIrq();
  const tx: number[] = [];
  const uart = new Uart16550({ clock: tl, irq, base: COM1, onTransmit: (b) => tx.push(b), dead });
  const rd = (p: number) => uart.ioRead(p, 1);
  const wr = (p: number, v: number) => uart.ioWrite(p, 1, v);
  return { tl, irq, tx, uart, rd, wr };
}

describe('Uart16550', () => {
  it('has QEMU reset values and transmits instantly through onTransmit', () => {
    const { tx, rd, wr, irq } = setup();
    expect(rd(IIR)).toBe(0x01);
    expect(rd(LSR)).toBe(0x60);
    expect(rd(MCR)).toBe(0x08);
    expect(rd(MSR)).toBe(0xb0);
    for (const c of 'Hi\n') wr(THR, c.charCodeAt(0));
    expect(String.fromCharCode(...tx)).toBe('Hi\n');
    expect(rd(LSR) & 0x60).toBe(0x60); // THRE and TEMT set again at once
    expect(irq.rises).toBe(0); // no interrupts enabled
  });

  it('programs the divisor latch under DLAB without disturbing IER', () => {
    const { uart, rd, wr } = setup();
    wr(IER, 0x05);
    wr(LCR, 0x80);
    wr(THR, 0x01); // DLL: 115200 baud
    wr(IER, 0x00); // DLM
    expect(rd(THR)).toBe(0x01);
    expect(rd(IER)).toBe(0x00);
    wr(LCR, 0x03);
    expect(rd(IER)).toBe(0x05);
    expect(rd(LCR)).toBe(0x03);
    expect(uart.registers().divisor).toBe(1);
    wr(SCR, 0xa5);
    expect(rd(SCR)).toBe(0xa5);
  });

  it('loopback echoes TX into RBR, sends nothing out, and maps MCR outputs to MSR inputs', () => {
    const { tx, rd, wr, uart } = setup();
    wr(MCR, 0x1f);
    expect(rd(MSR)).toBe(0xf0);
    wr(MCR, 0x1a); // the Linux autoconfig probe: LOOP | OUT2 | RTS
    expect(rd(MSR) & 0xf0).toBe(0x90);
    wr(THR, 0x55);
    expect(tx).toEqual([]);
    expect(rd(LSR) & 0x01).toBe(0x01);
    expect(rd(RBR)).toBe(0x55);
    expect(rd(LSR) & 0x01).toBe(0x00);
    // Host input waits while the line is looped back, then arrives.
    uart.receive([0x41]);
    expect(rd(LSR) & 0x01).toBe(0);
    wr(MCR, 0x0b);
    expect(rd(RBR)).toBe(0x41);
  });

  it('dead fault: every register reads 0xFF, writes vanish, no IRQ', () => {
    const { tx, rd, wr, irq, uart } = setup(true);
    wr(IER, 0x0f);
    wr(THR, 0x41);
    uart.receive([1, 2, 3]);
    for (let r = 0; r < 8; r++) expect(rd(COM1 + r)).toBe(0xff);
    expect(uart.ioRead(COM1, 2)).toBe(0xffff);
    expect(tx).toEqual([]);
    expect(irq.rises).toBe(0);
  });

  it('IIR reports line status > RX data > THR empty > modem status, and the IRQ follows', () => {
    const { rd, wr, irq, uart } = setup();
    wr(IER, 0x0f);
    expect(irq.level).toBe(true);
    expect(rd(IIR)).toBe(0x02); // THRE pending as soon as enabled; this read acknowledges it
    expect(irq.level).toBe(false);
    uart.receive([0x31]);
    expect(irq.level).toBe(true);
    expect(rd(IIR)).toBe(0x04); // RX data outranks THRE
    // Overrun via loopback: second byte while DR is still set.
    wr(MCR, 0x10);
    wr(THR, 0x32);
    expect(rd(IIR)).toBe(0x06); // line status first
    expect(rd(LSR) & 0x02).toBe(0x02); // reading LSR clears OE...
    expect(rd(IIR)).toBe(0x04); // ...back to RX data
    expect(rd(RBR)).toBe(0x32);
    expect(irq.level).toBe(true);
    expect(rd(IIR)).toBe(0x02); // THRE (re-armed by the THR write)...
    expect(irq.level).toBe(false); // ...acknowledged by that IIR read
    expect(rd(IIR)).toBe(0x01);
  });

  it('modem status is the lowest priority; reading MSR clears the delta bits', () => {
    const { rd, wr, uart, irq } = setup();
    wr(IER, 0x08);
    uart.setModemInputs({ cts: false, ri: true });
    expect(rd(IIR)).toBe(0x00);
    expect(irq.level).toBe(true);
    wr(IER, 0x0a);
    expect(rd(IIR)).toBe(0x02); // THRE outranks modem status
    expect(rd(IIR)).toBe(0x00);
    expect(rd(MSR)).toBe(0xe1); // DCD, RI, DSR + delta CTS (RI rising is not a TERI edge)
    expect(rd(IIR)).toBe(0x01);
    expect(irq.level).toBe(false);
    uart.setModemInputs({ ri: false });
    expect(rd(MSR)).toBe(0xa4); // trailing edge of RI
  });

  it('re-arms the THRE interrupt on IER write and after each THR write (one IRQ edge per byte)', () => {
    const { rd, wr, irq } = setup();
    wr(IER, 0x02);
    expect(irq.rises).toBe(1);
    expect(rd(IIR)).toBe(0x02);
    expect(rd(IIR)).toBe(0x01);
    wr(IER, 0x00);
    wr(IER, 0x02);
    expect(rd(IIR)).toBe(0x02);
    expect(irq.rises).toBe(2);
    wr(THR, 0x41);
    wr(THR, 0x42);
    expect(irq.rises).toBe(4);
    expect(rd(IIR)).toBe(0x02);
  });

  it('FIFO mode: IIR bits 0xC0, trigger level, character timeout, 16-byte FIFO with host backpressure', () => {
    const { tl, rd, wr, uart, irq } = setup();
    wr(LCR, 0x03); // 8N1 (reset LCR is 5N1)
    wr(FCR, 0xc7); // enable + clear, trigger 14
    expect(rd(IIR) & 0xc0).toBe(0xc0);
    wr(IER, 0x01);
    uart.receive([1, 2, 3]);
    expect(rd(IIR)).toBe(0xc1); // below the trigger level: nothing yet
    expect(irq.level).toBe(false);
    // 9600 8N1: 4 characters = ~4.17 ms
    tl.advanceTo(4_100_000);
    expect(rd(IIR)).toBe(0xc1);
    tl.advanceTo(4_200_000);
    expect(rd(IIR)).toBe(0xcc); // character timeout
    expect(irq.level).toBe(true);
    expect([rd(RBR), rd(RBR), rd(RBR)]).toEqual([1, 2, 3]);
    expect(rd(IIR)).toBe(0xc1);

    const data = Array.from({ length: 40 }, (_, i) => i + 0x40);
    uart.receive(data);
    expect(rd(IIR)).toBe(0xc4); // 16 >= 14: RX data available
    expect(uart.pendingInput()).toBe(40 - 16);
    const got: number[] = [];
    while (rd(LSR) & 1) got.push(rd(RBR));
    expect(got).toEqual(data); // nothing lost to overrun
    expect(rd(LSR) & 0x02).toBe(0);

    wr(FCR, 0x00); // disabling flushes and drops the FIFO bits
    expect(rd(IIR) & 0xc0).toBe(0);
  });

  it('non-FIFO mode holds one byte; host input waits for the guest to read', () => {
    const { rd, uart } = setup();
    uart.receive([0x61, 0x62]);
    expect(uart.pendingInput()).toBe(1);
    expect(rd(RBR)).toBe(0x61);
    expect(rd(RBR)).toBe(0x62);
    expect(rd(LSR) & 0x03).toBe(0);
  });

  it('snapshot round-trip with FIFO contents and a pending timeout continues identically', () => {
    const a = setup();
    a.wr(FCR, 0x87); // trigger 8
    a.wr(IER, 0x03);
    a.wr(LCR, 0x80);
    a.wr(THR, 0x03); // 38400 baud
    a.wr(LCR, 0x03);
    a.uart.receive([10, 11, 12, 13, 14]);
    a.tl.advanceTo(100_000);
    const saved = cloneState(a.uart.saveState());

    const b = setup();
    b.tl.reset(a.tl.nowNs());
    b.irq.level = a.irq.level;
    b.uart.restoreState(saved);

    const run = (m: ReturnType<typeof setup>) => {
      const out: number[] = [];
      const r0 = m.irq.rises;
      for (const t of [500_000, 1_100_000, 1_200_000, 2_000_000]) {
        m.tl.advanceTo(t);
        out.push(m.rd(IIR), m.irq.rises - r0);
      }
      while (m.rd(LSR) & 1) out.push(m.rd(RBR));
      m.wr(THR, 0x7a);
      out.push(m.rd(IIR), m.tx.length);
      return out;
    };
    expect(run(b)).toEqual(run(a));
  });

  it('restore rejects bad records, naming the field', () => {
    const { uart } = setup();
    const s = uart.saveState();
    expect(() => uart.restoreState({ ...s, ier: 0x1f })).toThrow(StateError);
    expect(() => uart.restoreState({ ...s, ier: 0x1f })).toThrow(/uart@0x3f8: state field 'ier'/);
    expect(() => uart.restoreState({ ...s, rxFifo: new Uint8Array(17) })).toThrow(/'rxFifo'/);
    expect(() => uart.restoreState({ ...s, hostQueue: [1, 2] })).toThrow(/'hostQueue'/);
  });
});
