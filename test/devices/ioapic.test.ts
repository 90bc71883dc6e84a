import { describe, expect, it } from 'vitest';
import { Timeline } from '../../machine/clock.js';
import { IoApic, IOAPIC_VERSION, type IoApicMessage } from '../../machine/devices/ioapic.js';
import { PcBoard } from '../../machine/platform/board.js';
import { AcpiPm, PM_TIMER_HZ } from '../../machine/devices/acpi-pm.js';
import { I8042ResetLine } from '../../machine/devices/i8042-reset.js';
import { StateError } from '../../machine/state.js';
import { cloneState } from './helpers.js';

const IOREGSEL = 0x00;
const IOWIN = 0x10;
const EOI_REG = 0x40;
const MASKED = 1 << 16;
const LEVEL = 1 << 15;
const REMOTE_IRR = 1 << 14;

function setup() {
  const sent: IoApicMessage[] = [];
  const io = new IoApic({ deliver: (m) => sent.push(m) });
  const write = (reg: number, v: number) => {
    io.mmioWrite(IOREGSEL, 4, reg);
    io.mmioWrite(IOWIN, 4, v);
  };
  const read = (reg: number): number => {
    io.mmioWrite(IOREGSEL, 4, reg);
    return io.mmioRead(IOWIN, 4);
  };
  const route = (pin: number, lo: number, dest = 0) => {
    write(0x11 + 2 * pin, dest << 24);
    write(0x10 + 2 * pin, lo);
  };
  return { io, sent, write, read, route };
}

describe('I/O APIC', () => {
  it('identifies itself as QEMU version 0x20 with 24 entries, all masked at reset; IOREGSEL reads back', () => {
    const { io, read, write } = setup();
    expect(read(0x01)).toBe(IOAPIC_VERSION);
    expect(IOAPIC_VERSION).toBe(0x00170020);
    for (let pin = 0; pin < 24; pin++) expect(read(0x10 + 2 * pin)).toBe(MASKED);
    write(0x00, 0x0a000000);
    expect(read(0x00)).toBe(0x0a000000);
    io.mmioWrite(IOREGSEL, 4, 0x13);
    expect(io.mmioRead(IOREGSEL, 4)).toBe(0x13);
    expect(read(0x01 + 0x40)).toBe(0xffffffff); // beyond the table
  });

  it('edge: a rising edge delivers once; a masked edge waits and is delivered when unmasked', () => {
    const { io, sent, route } = setup();
    route(2, 0x30, 1);
    io.line(2).setLevel(true);
    io.line(2).setLevel(true); // still high: no new edge
    expect(sent).toEqual([{ pin: 2, vector: 0x30, mode: 'fixed', destinationMode: 'physical', destination: 1, trigger: 'edge' }]);
    io.line(2).setLevel(false);
    route(4, 0x34 | MASKED);
    io.line(4).pulse();
    expect(sent).toHaveLength(1);
    route(4, 0x34 | (1 << 11) | (1 << 8), 0x3); // unmask: logical, lowest priority
    expect(sent[1]).toEqual({ pin: 4, vector: 0x34, mode: 'lowest-priority', destinationMode: 'logical', destination: 3, trigger: 'edge' });
  });

  it('level: delivers while high, sets Remote IRR, and again after the EOI only if the line is still high', () => {
    const { io, sent, route, read } = setup();
    route(9, 0x39 | LEVEL);
    io.line(9).setLevel(true);
    expect(sent).toHaveLength(1);
    expect(read(0x10 + 18) & REMOTE_IRR).toBe(REMOTE_IRR);
    io.line(9).setLevel(true);
    expect(sent).toHaveLength(1); // Remote IRR holds it
    io.eoi(0x39);
    expect(sent).toHaveLength(2); // still high: again
    io.line(9).setLevel(false);
    io.mmioWrite(EOI_REG, 4, 0x39); // the directed-EOI register does the same
    expect(read(0x10 + 18) & REMOTE_IRR).toBe(0);
    expect(sent).toHaveLength(2);
    io.eoi(0x40); // another vector: nothing
    expect(sent).toHaveLength(2);
  });

  it('Remote IRR and delivery status are read-only; switching to edge clears Remote IRR', () => {
    const { io, route, read, write } = setup();
    route(5, 0x45 | LEVEL);
    io.line(5).setLevel(true);
    write(0x10 + 10, 0x45 | LEVEL); // guest tries to clear Remote IRR
    expect(read(0x10 + 10) & REMOTE_IRR).toBe(REMOTE_IRR);
    write(0x10 + 10, 0x45 | MASKED);
    expect(read(0x10 + 10)).toBe(0x45 | MASKED);
  });

  it('saves and restores its registers, and refuses a bad record with the field named', () => {
    const { io, route, sent } = setup();
    route(9, 0x39 | LEVEL, 1);
    io.line(9).setLevel(true);
    const saved = cloneState(io.saveState());
    const other = setup();
    other.io.restoreState(saved);
    expect(other.io.registers()).toEqual(io.registers());
    other.io.eoi(0x39); // the restored line is still high: re-delivered
    expect(other.sent).toHaveLength(1);
    expect(sent).toHaveLength(1);
    expect(() => other.io.restoreState({ ...saved, lo: [1, 2] })).toThrow(StateError);
    expect(() => other.io.restoreState({ ...saved, irr: 1 << 24 })).toThrow(/ioapic.*irr/);
  });
});

describe('the board routes ISA IRQs through the I/O APIC to the LAPICs', () => {
  function board() {
    const tl = new Timeline();
    const b = new PcBoard({ clock: tl, cpus: 2, memoryBytes: 64 << 20, lowMemoryBytes: 64 << 20, kick: () => {}, control: { onInit: () => {}, onStartup: () => {} }, onSerialByte: () => {}, onDebugExit: () => {}, ioapic: true });
    const lapicWrite = (cpu: number, off: number, v: number) => b.lapics[cpu]!.mmioWrite(off, 4, v);
    for (const cpu of [0, 1]) lapicWrite(cpu, 0xf0, 0x1ff); // software-enable
    const ioWrite = (reg: number, v: number) => {
      b.ioapic!.mmioWrite(IOREGSEL, 4, reg);
      b.ioapic!.mmioWrite(IOWIN, 4, v);
    };
    return { tl, b, lapicWrite, ioWrite };
  }

  it('the PIT (IRQ 0) arrives at pin 2 and reaches the APIC the entry names', () => {
    const { tl, b, ioWrite } = board();
    ioWrite(0x15, 1 << 24); // pin 2 -> APIC 1
    ioWrite(0x14, 0x30);
    b.io.ioWrite(0x43, 1, 0x34); // channel 0, mode 2
    b.io.ioWrite(0x40, 1, 0x00);
    b.io.ioWrite(0x40, 1, 0x10); // 4096 counts
    tl.advanceTo(10_000_000);
    expect(b.interruptPending(0)).toBe(false);
    expect(b.interruptPending(1)).toBe(true);
    expect(b.acknowledgeInterrupt(1)).toBe(0x30);
  });

  it('a level-triggered COM1 interrupt: Remote IRR until the LAPIC EOI, then again while the UART still asks', () => {
    const { b, ioWrite, lapicWrite } = board();
    ioWrite(0x19, 0);
    ioWrite(0x18, 0x34 | LEVEL); // pin 4 (COM1) -> APIC 0, level
    b.io.ioWrite(0x3f9, 1, 0x02); // IER: THR empty
    b.io.ioWrite(0x3fc, 1, 0x08); // MCR OUT2: the UART drives its IRQ
    expect(b.acknowledgeInterrupt(0)).toBe(0x34);
    expect(b.lapics[0]!.registers().tmr[1]! & (1 << (0x34 - 32))).not.toBe(0);
    lapicWrite(0, 0xb0, 0); // EOI: the line is still high, so it comes again
    expect(b.acknowledgeInterrupt(0)).toBe(0x34);
    b.io.ioWrite(0x3f9, 1, 0x00); // the UART stops asking
    lapicWrite(0, 0xb0, 0);
    expect(b.interruptPending(0)).toBe(false);
  });

  it("the I/O APIC's state travels in the board's device records; an older record without it leaves it at reset", () => {
    const { b, ioWrite } = board();
    ioWrite(0x14, 0x30);
    const rec = cloneState(b.saveState());
    const other = board();
    other.b.restoreState((rec as { devices: never }).devices, (rec as { lapics: never }).lapics, 'test');
    expect(other.b.ioapic!.registers()).toEqual(b.ioapic!.registers());
    const devices = { ...(rec as { devices: Record<string, unknown> }).devices };
    delete devices['ioapic'];
    other.b.restoreState(devices as never, (rec as { lapics: never }).lapics, 'test');
    expect(other.b.ioapic!.registers().redirection[2]!.lo).toBe(MASKED);
  });
});

describe('NMI through the LAPICs', () => {
  it('an NMI IPI and LINT1 programmed as NMI (the MADT LAPIC NMI entry) reach the CPU; a fixed LINT1 does not', () => {
    const nmis: number[] = [];
    const b = new PcBoard({ clock: new Timeline(), cpus: 2, memoryBytes: 64 << 20, lowMemoryBytes: 64 << 20, kick: () => {}, control: { onInit: () => {}, onStartup: () => {}, onNmi: (cpu) => nmis.push(cpu) }, onSerialByte: () => {}, onDebugExit: () => {}, ioapic: true });
    for (const cpu of [0, 1]) b.lapics[cpu]!.mmioWrite(0xf0, 4, 0x1ff);
    b.lapics[0]!.mmioWrite(0x310, 4, 1 << 24);
    b.lapics[0]!.mmioWrite(0x300, 4, 0x400); // NMI to APIC 1
    expect(nmis).toEqual([1]);
    b.lapics[0]!.mmioWrite(0x300, 4, 0x400 | (3 << 18)); // NMI to all but self
    expect(nmis).toEqual([1, 1]);
    b.lapics[0]!.mmioWrite(0x360, 4, 0x400); // LINT1: NMI, unmasked
    b.lapics[0]!.setLint(1, true);
    expect(nmis).toEqual([1, 1, 0]);
    b.lapics[0]!.setLint(1, false);
    b.lapics[0]!.mmioWrite(0x360, 4, 0x10400); // masked
    b.lapics[0]!.setLint(1, true);
    expect(nmis).toEqual([1, 1, 0]);
  });

  it('an I/O APIC entry in NMI delivery mode sends an NMI', () => {
    const nmis: number[] = [];
    const b = new PcBoard({ clock: new Timeline(), cpus: 2, memoryBytes: 64 << 20, lowMemoryBytes: 64 << 20, kick: () => {}, control: { onInit: () => {}, onStartup: () => {}, onNmi: (cpu) => nmis.push(cpu) }, onSerialByte: () => {}, onDebugExit: () => {}, ioapic: true });
    b.ioapic!.mmioWrite(IOREGSEL, 4, 0x11 + 2 * 3);
    b.ioapic!.mmioWrite(IOWIN, 4, 1 << 24);
    b.ioapic!.mmioWrite(IOREGSEL, 4, 0x10 + 2 * 3);
    b.ioapic!.mmioWrite(IOWIN, 4, 4 << 8);
    b.ioapic!.line(3).pulse();
    expect(nmis).toEqual([1]);
  });
});

describe('ACPI PM block and the i8042 reset line', () => {
  it('the PM timer counts at 3.579545 MHz on virtual time, 24 bits; SCI_EN reads 1; SLP_EN with SLP_TYP 0 powers off', () => {
    const tl = new Timeline();
    let off = 0;
    const pm = new AcpiPm({ clock: tl, onPowerOff: () => off++ });
    expect(pm.ioRead(0x608, 4)).toBe(0);
    tl.advanceTo(1_000_000_000);
    expect(pm.ioRead(0x608, 4)).toBe(PM_TIMER_HZ & 0xffffff);
    tl.advanceTo(10_000_000_000);
    expect(pm.ioRead(0x608, 4)).toBe((PM_TIMER_HZ * 10) % 2 ** 24);
    expect(pm.ioRead(0x604, 2) & 1).toBe(1);
    pm.ioWrite(0x604, 2, (1 << 10) | (1 << 13)); // S3 type: not declared, ignored
    expect(off).toBe(0);
    pm.ioWrite(0x604, 2, 1 << 13);
    expect(off).toBe(1);
    pm.ioWrite(0x602, 2, 0x0120);
    expect(pm.ioRead(0x600, 4)).toBe(0x01200000);
    const other = new AcpiPm({ clock: tl, onPowerOff: () => {} });
    other.restoreState(cloneState(pm.saveState()));
    expect(other.ioRead(0x600, 4)).toBe(0x01200000);
  });

  it('command 0xFE on port 0x64 resets; other commands and reads do nothing', () => {
    let resets = 0;
    const kbc = new I8042ResetLine(() => resets++);
    kbc.ioWrite(0x64, 1, 0xad);
    expect(resets).toBe(0);
    expect(kbc.ioRead(0x64, 1)).toBe(0xff);
    kbc.ioWrite(0x64, 1, 0xfe);
    expect(resets).toBe(1);
  });
});
