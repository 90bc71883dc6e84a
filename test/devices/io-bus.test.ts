import { describe, expect, it } from 'vitest';
import { IoBus, MmioBus } from '../../machine/devices/io-bus.js';
import type { AccessSize, MmioDevice, PortIoDevice } from '../../machine/devices/device.js';
import type { StateRecord } from '../../machine/state.js';

class RegFile implements PortIoDevice {
  readonly snapshotId: string;
  readonly stateVersion = 1;
  readonly regs = new Map<number, number>();
  readonly log: string[] = [];
  constructor(
    readonly name: string,
    readonly ports: { base: number; length: number }[],
  ) {
    this.snapshotId = name;
  }
  ioRead(port: number, size: AccessSize): number {
    this.log.push(`r${size}@${port.toString(16)}`);
    return this.regs.get(port) ?? 0x11 * size;
  }
  ioWrite(port: number, size: AccessSize, value: number): void {
    this.log.push(`w${size}@${port.toString(16)}=${value.toString(16)}`);
    this.regs.set(port, value);
  }
  saveState(): StateRecord {
    return { version: 1 };
  }
  restoreState(): void {}
}

class Ram implements MmioDevice {
  readonly snapshotId: string;
  readonly stateVersion = 1;
  readonly accesses: { offset: number; size: number; value?: number }[] = [];
  constructor(
    readonly name: string,
    readonly mmio: { base: number; length: number }[],
  ) {
    this.snapshotId = name;
  }
  mmioRead(offset: number, size: AccessSize): number {
    this.accesses.push({ offset, size });
    return offset;
  }
  mmioWrite(offset: number, size: AccessSize, value: number): void {
    this.accesses.push({ offset, size, value });
  }
  saveState(): StateRecord {
    return { version: 1 };
  }
  restoreState(): void {}
}

describe('IoBus', () => {
  it('dispatches reads and writes to the owning device with the full access', () => {
    const bus = new IoBus();
    const dev = new RegFile('dev', [{ base: 0x3f8, length: 8 }]);
    bus.register(dev);
    bus.ioWrite(0x3f9, 1, 0x5a);
    expect(bus.ioRead(0x3f9, 1)).toBe(0x5a);
    bus.ioWrite(0x3fa, 4, 0xdeadbeef);
    expect(bus.ioRead(0x3fa, 4)).toBe(0xdeadbeef); // stays unsigned
    expect(dev.log).toContain('w4@3fa=deadbeef');
    expect(bus.deviceAt(0x3ff)).toBe(dev);
    expect(bus.deviceAt(0x400)).toBeUndefined();
  });

  it('rejects overlapping claims naming both devices and claims nothing on failure', () => {
    const bus = new IoBus();
    bus.register(new RegFile('pic', [{ base: 0x20, length: 2 }]));
    const bad = new RegFile('intruder', [
      { base: 0x60, length: 1 },
      { base: 0x21, length: 1 },
    ]);
    expect(() => bus.register(bad)).toThrow(/intruder.*overlaps 'pic' at port 0x0021/);
    // Its non-overlapping range was not claimed either.
    expect(bus.deviceAt(0x60)).toBeUndefined();
    expect(() => bus.register(new RegFile('neg', [{ base: 0xffff, length: 2 }]))).toThrow(/invalid port range/);
  });

  it('reads all-ones from unclaimed ports and logs unclaimed writes for the UI', () => {
    const bus = new IoBus();
    expect(bus.ioRead(0x1234, 1)).toBe(0xff);
    expect(bus.ioRead(0x1234, 2)).toBe(0xffff);
    expect(bus.ioRead(0x1234, 4)).toBe(0xffffffff);
    bus.ioWrite(0x80, 1, 0x12);
    bus.ioWrite(0x80, 1, 0x34);
    bus.ioWrite(0x10, 2, 0xabcd);
    const log = bus.unclaimed();
    expect(log.map((r) => r.port)).toEqual([0x10, 0x80, 0x1234]);
    expect(log[1]).toMatchObject({ port: 0x80, writes: 2, reads: 0, lastWriteValue: 0x34, lastSize: 1 });
    expect(log[2]).toMatchObject({ reads: 3, writes: 0, lastWriteValue: null });
    bus.clearUnclaimed();
    expect(bus.unclaimed()).toEqual([]);
  });

  it('splits an access that straddles devices or open bus into bytes', () => {
    const bus = new IoBus();
    const a = new RegFile('a', [{ base: 0x100, length: 1 }]);
    const b = new RegFile('b', [{ base: 0x101, length: 1 }]);
    bus.register(a);
    bus.register(b);
    a.regs.set(0x100, 0x34);
    b.regs.set(0x101, 0x12);
    expect(bus.ioRead(0x100, 2)).toBe(0x1234);
    // Third byte is unclaimed: reads as 0xff.
    expect(bus.ioRead(0x100, 4)).toBe(0xffff1234);
    bus.ioWrite(0x100, 2, 0xbeef);
    expect(a.regs.get(0x100)).toBe(0xef);
    expect(b.regs.get(0x101)).toBe(0xbe);
  });

  it('refuses 8-byte port accesses', () => {
    expect(() => new IoBus().ioRead(0x80, 8)).toThrow(RangeError);
  });
});

describe('MmioBus', () => {
  it('finds the device and gives offsets relative to the range base', () => {
    const bus = new MmioBus();
    const hpet = new Ram('hpet', [{ base: 0xfed00000, length: 0x400 }]);
    const ioapic = new Ram('ioapic', [{ base: 0xfec00000, length: 0x1000 }]);
    bus.register(hpet);
    bus.register(ioapic);
    expect(bus.find(0xfed00010)).toMatchObject({ device: hpet, offset: 0x10, base: 0xfed00000 });
    expect(bus.read(0xfec00ff0, 4)).toBe(0xff0);
    expect(bus.write(0xfed000f0, 8, 42)).toBe(true);
    expect(hpet.accesses.at(-1)).toEqual({ offset: 0xf0, size: 8, value: 42 });
    expect(bus.read(0xfed00400, 4)).toBeUndefined();
    expect(bus.write(0x1000, 4, 1)).toBe(false);
  });

  it('rejects overlapping MMIO ranges', () => {
    const bus = new MmioBus();
    bus.register(new Ram('a', [{ base: 0x1000, length: 0x1000 }]));
    expect(() => bus.register(new Ram('b', [{ base: 0x1ff0, length: 0x20 }]))).toThrow(/'b'.*overlaps 'a'/);
    bus.register(new Ram('c', [{ base: 0x2000, length: 0x10 }]));
    expect(bus.devices().map((d) => d.name)).toEqual(['a', 'c']);
  });
});
