import { describe, expect, it } from 'vitest';
import { Timeline } from '../../machine/clock.js';
import { CmosRtc, DEFAULT_RTC_EPOCH_SECONDS, pcLowMemoryBytes } from '../../machine/devices/cmos-rtc.js';
import { StateError } from '../../machine/state.js';
import { cloneState, RecordingIrq } from './helpers.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const MS = 1_000_000;
const S = 1_000_000_000;

function setup(opts: { memoryBytes?: number; cpus?: number; badChecksum?: boolean } = {}) {
  const tl = new Timeline();
  const irq = new RecordingIrq();
  const rtc = new CmosRtc({ clock: tl, irq, memoryBytes: opts.memoryBytes ?? 64 * MiB, cpus: opts.cpus ?? 1, badChecksum: opts.badChecksum });
  const rd = (i: number) => {
    rtc.ioWrite(0x70, 1, i);
    return rtc.ioRead(0x71, 1);
  };
  const wr = (i: number, v: number) => {
    rtc.ioWrite(0x70, 1, i);
    rtc.ioWrite(0x71, 1, v);
  };
  return { tl, irq, rtc, rd, wr };
}

const timeRegs = (rd: (i: number) => number) => [0, 2, 4, 6, 7, 8, 9, 0x32].map(rd);

describe('CmosRtc', () => {
  it('starts at 2026-01-01 00:00:00 (Thursday) in BCD 24-hour mode, independent of host time', () => {
    const { rd } = setup();
    expect(DEFAULT_RTC_EPOCH_SECONDS).toBe(1767225600);
    //           sec  min  hour wday mday mon  year century
    expect(timeRegs(rd)).toEqual([0x00, 0x00, 0x00, 0x05, 0x01, 0x01, 0x26, 0x20]);
    expect(rd(0x0a)).toBe(0x26);
    expect(rd(0x0b)).toBe(0x02);
    expect(rd(0x0d)).toBe(0x80);
  });

  it('advances with virtual time; honours binary and 12-hour formats', () => {
    const { tl, rd, wr } = setup();
    tl.advanceTo(13 * 3600 * S + 59 * 60 * S + 58 * S + 500 * MS);
    expect(timeRegs(rd).slice(0, 3)).toEqual([0x58, 0x59, 0x13]);
    wr(0x0b, 0x00); // BCD, 12-hour
    expect(rd(4)).toBe(0x81); // 1 PM
    wr(0x0b, 0x06); // binary, 24-hour
    expect(timeRegs(rd)).toEqual([58, 59, 13, 5, 1, 1, 26, 20]);
    tl.advanceTo(24 * 3600 * S + 10 * 3600 * S);
    wr(0x0b, 0x04); // binary, 12-hour
    expect(rd(4)).toBe(10); // 10 AM, next day
    expect(rd(7)).toBe(2);
  });

  it('takes a configurable base epoch and rolls the century register', () => {
    const tl = new Timeline();
    const rtc = new CmosRtc({ clock: tl, irq: new RecordingIrq(), memoryBytes: 16 * MiB, cpus: 1, epochSeconds: Date.UTC(1999, 11, 31, 23, 59, 59) / 1000 });
    const rd = (i: number) => (rtc.ioWrite(0x70, 1, i), rtc.ioRead(0x71, 1));
    expect(timeRegs(rd)).toEqual([0x59, 0x59, 0x23, 0x06, 0x31, 0x12, 0x99, 0x19]);
    tl.advanceTo(S);
    expect(timeRegs(rd)).toEqual([0x00, 0x00, 0x00, 0x07, 0x01, 0x01, 0x00, 0x20]);
    expect(rtc.timeSeconds()).toBe(Date.UTC(2000, 0, 1) / 1000);
  });

  it('UIP is set only in the last 244 us before each update', () => {
    const { tl, rd } = setup();
    tl.advanceTo(500 * MS);
    expect(rd(0x0a) & 0x80).toBe(0);
    tl.advanceTo(S - 200_000);
    expect(rd(0x0a) & 0x80).toBe(0x80);
    tl.advanceTo(S + 1);
    expect(rd(0x0a) & 0x80).toBe(0);
  });

  it('SET mode freezes the registers; clearing SET starts from the written time', () => {
    const { tl, rd, wr } = setup();
    wr(0x0b, 0x82);
    wr(4, 0x12);
    wr(2, 0x34);
    wr(0, 0x56);
    tl.advanceTo(5 * S);
    expect(rd(0)).toBe(0x56);
    wr(0x0b, 0x02);
    tl.advanceTo(7 * S);
    expect(timeRegs(rd).slice(0, 3)).toEqual([0x58, 0x34, 0x12]);
  });

  it('writing a time register while running keeps the other fields current', () => {
    const { tl, rd, wr } = setup();
    tl.advanceTo(3 * 3600 * S + 20 * 60 * S);
    wr(2, 0x45); // minutes only
    expect(timeRegs(rd).slice(0, 3)).toEqual([0x00, 0x45, 0x03]);
  });

  it('periodic interrupt on IRQ8 at the register A rate while PIE is set; reading C clears flags and lowers IRQ', () => {
    const { tl, irq, rd, wr } = setup();
    wr(0x0b, 0x42); // PIE
    let n = 0;
    for (let t = 0; t <= S + 50_000; t += 50_000) {
      tl.advanceTo(t);
      if (irq.level) {
        expect(rd(0x0c) & 0xc0).toBe(0xc0);
        expect(irq.level).toBe(false);
        n++;
      }
    }
    expect(n).toBe(1024); // rate 6 = 1024 Hz (the 1024th tick lands 1 ns after 1 s, as in QEMU)
    wr(0x0a, 0x2f); // rate 15 = 2 Hz
    n = 0;
    for (let t = S; t <= 3 * S + MS; t += MS) {
      tl.advanceTo(t);
      if (irq.level) {
        rd(0x0c);
        n++;
      }
    }
    expect(n).toBe(4); // at 1.5, 2.0, 2.5 and 3.0 s: the new rate counts from the previous tick
    wr(0x0b, 0x02);
    tl.advanceTo(5 * S);
    expect(irq.level).toBe(false);
    expect(rd(0x0c) & 0xc0).toBe(0x00); // no PF/IRQF while PIE is off (QEMU); UF may be set
  });

  it('update-ended interrupt once per second with UIE, and UF visible to polling without it', () => {
    const { tl, irq, rd, wr } = setup();
    tl.advanceTo(1_500 * MS);
    expect(rd(0x0c)).toBe(0x10); // a second boundary passed: UF (no IRQF: not enabled)
    expect(rd(0x0c)).toBe(0x00);
    wr(0x0b, 0x12); // UIE
    tl.advanceTo(1_999 * MS);
    expect(irq.level).toBe(false);
    tl.advanceTo(2 * S);
    expect(irq.level).toBe(true);
    expect(rd(0x0c)).toBe(0x90);
    tl.advanceTo(3 * S);
    expect(irq.rises).toBe(2);
  });

  it('alarm interrupt fires when the time matches, with don\'t-care fields', () => {
    const { tl, irq, rd, wr } = setup();
    wr(1, 0x05); // seconds alarm 05
    wr(3, 0xc0); // any minute
    wr(5, 0xc0); // any hour
    wr(0x0b, 0x22); // AIE
    tl.advanceTo(4 * S);
    expect(irq.level).toBe(false);
    tl.advanceTo(5 * S);
    expect(irq.level).toBe(true);
    expect(rd(0x0c)).toBe(0xb0); // IRQF | AF | UF
    tl.advanceTo(64 * S);
    expect(rd(0x0c) & 0x20).toBe(0x00);
    tl.advanceTo(65 * S);
    expect(rd(0x0c) & 0xa0).toBe(0xa0); // next minute, same second
  });

  it('remembers the NMI-disable bit of port 0x70 and reads the index port as 0xFF', () => {
    const { rtc } = setup();
    rtc.ioWrite(0x70, 1, 0x8f);
    expect(rtc.nmiDisabled()).toBe(true);
    expect(rtc.ioRead(0x70, 1)).toBe(0xff);
    rtc.ioWrite(0x71, 1, 0x0a); // index 0x0f = shutdown status
    rtc.ioWrite(0x70, 1, 0x0f);
    expect(rtc.nmiDisabled()).toBe(false);
    expect(rtc.ioRead(0x71, 1)).toBe(0x0a);
  });

  it('ignores writes to C and D and treats UIP as read-only', () => {
    const { rd, wr } = setup();
    wr(0x0c, 0xff);
    wr(0x0d, 0x00);
    expect(rd(0x0c)).toBe(0x00);
    expect(rd(0x0d)).toBe(0x80);
    wr(0x0a, 0xa6);
    expect(rd(0x0a)).toBe(0x26);
  });

  it('fills the PC configuration bytes for 64 MiB, 1 CPU', () => {
    const { rtc } = setup({ memoryBytes: 64 * MiB, cpus: 1 });
    const b = rtc.bytes();
    expect(b[0x10]).toBe(0x00);
    expect(b[0x14]).toBe(0x06);
    expect(b[0x15]! | (b[0x16]! << 8)).toBe(640);
    expect(b[0x17]! | (b[0x18]! << 8)).toBe(63 * 1024);
    expect(b[0x30]! | (b[0x31]! << 8)).toBe(63 * 1024);
    expect(b[0x34]! | (b[0x35]! << 8)).toBe((48 * MiB) / 65536);
    expect([b[0x5b], b[0x5c], b[0x5d]]).toEqual([0, 0, 0]);
    expect(b[0x5f]).toBe(0);
    expect(b[0x32]).toBe(0x20);
  });

  it('fills the PC configuration bytes for 5 GiB, 4 CPUs (3 GiB low, 2 GiB above 4 GiB)', () => {
    expect(pcLowMemoryBytes(5 * GiB)).toBe(3 * GiB);
    expect(pcLowMemoryBytes(3 * GiB + 256 * MiB)).toBe(3 * GiB + 256 * MiB);
    const { rtc } = setup({ memoryBytes: 5 * GiB, cpus: 4 });
    const b = rtc.bytes();
    expect(b[0x17]! | (b[0x18]! << 8)).toBe(0xffff); // capped
    expect(b[0x34]! | (b[0x35]! << 8)).toBe((3 * GiB - 16 * MiB) / 65536); // 0xBF00
    expect(b[0x5b]! | (b[0x5c]! << 8) | (b[0x5d]! << 16)).toBe((2 * GiB) / 65536);
    expect(b[0x5f]).toBe(3);
  });

  it('checksum over 0x10..0x2D is valid by default and wrong with the badChecksum fault', () => {
    const good = setup().rtc;
    const b = good.bytes();
    let sum = 0;
    for (let i = 0x10; i <= 0x2d; i++) sum += b[i]!;
    expect((b[0x2e]! << 8) | b[0x2f]!).toBe(sum & 0xffff);
    expect(good.checksumValid()).toBe(true);
    // Bytes outside 0x10..0x2D are not covered; the last covered byte is 0x2D.
    good.ioWrite(0x70, 1, 0x40);
    good.ioWrite(0x71, 1, 0x55);
    expect(good.checksumValid()).toBe(true);
    good.ioWrite(0x70, 1, 0x2d);
    good.ioWrite(0x71, 1, 0x55);
    expect(good.checksumValid()).toBe(false);

    const bad = setup({ badChecksum: true }).rtc;
    expect(bad.checksumValid()).toBe(false);
    // bytes() is a copy
    bad.bytes()[0x2e] = 0;
    expect(bad.bytes()[0x2e]).not.toBe(0);
  });

  it('snapshot round-trip with a running periodic timer continues identically', () => {
    const a = setup();
    a.wr(0x0b, 0x52); // PIE + UIE
    a.wr(0x0a, 0x2a); // 64 Hz
    a.wr(0x40, 0x99);
    a.tl.advanceTo(2_345 * MS);
    a.rtc.ioWrite(0x70, 1, 0x84);
    const saved = cloneState(a.rtc.saveState());

    const b = setup();
    b.tl.reset(a.tl.nowNs());
    b.irq.level = a.irq.level;
    b.rtc.restoreState(saved);

    const run = (m: ReturnType<typeof setup>) => {
      const out: number[] = [m.rtc.ioRead(0x71, 1)]; // index 4 survived: hours
      const r0 = m.irq.rises;
      for (let t = 2_345 * MS; t <= 4_000 * MS; t += 7 * MS) {
        m.tl.advanceTo(t);
        if (m.irq.level) out.push(t, m.rd(0x0c));
      }
      out.push(m.irq.rises - r0, ...timeRegs(m.rd), m.rd(0x40));
      return out;
    };
    expect(run(b)).toEqual(run(a));
  });

  it('restore rejects bad records, naming the field', () => {
    const { rtc } = setup();
    const s = rtc.saveState();
    expect(() => rtc.restoreState({ ...s, data: new Uint8Array(64) })).toThrow(StateError);
    expect(() => rtc.restoreState({ ...s, data: new Uint8Array(64) })).toThrow(/cmos: state field 'data'/);
    expect(() => rtc.restoreState({ ...s, offsetNs: -1 })).toThrow(/'offsetNs'/);
    expect(() => rtc.restoreState({ ...s, version: 0 })).toThrow(/'version'/);
  });
});
