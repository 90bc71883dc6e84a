/** The device state SeaBIOS leaves behind under QEMU -kernel: what Multiboot guests find at entry. */
import type { IoBus } from '../machine/devices/io-bus.js';

export function seabiosDeviceState(io: IoBus): void {
  const out = (port: number, v: number): void => io.ioWrite(port, 1, v);
  // 8259A pair at vectors 0x08 / 0x70, cascade on IRQ2, everything but the cascade masked.
  out(0x20, 0x11), out(0xa0, 0x11);
  out(0x21, 0x08), out(0xa1, 0x70);
  out(0x21, 0x04), out(0xa1, 0x02);
  out(0x21, 0x01), out(0xa1, 0x01);
  out(0x21, 0xfb), out(0xa1, 0xff);
  // PIT channel 0: mode 2, count 65536 (18.2 Hz).
  out(0x43, 0x34), out(0x40, 0x00), out(0x40, 0x00);
}
