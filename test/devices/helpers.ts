import type { IrqLine, PhysicalMemoryAccess } from '../../machine/devices/device.js';
import type { StateRecord } from '../../machine/state.js';

/** An IRQ line that records its level and counts rising edges. */
export class RecordingIrq implements IrqLine {
  level = false;
  rises = 0;
  falls = 0;
  setLevel(high: boolean): void {
    if (high && !this.level) this.rises++;
    if (!high && this.level) this.falls++;
    this.level = high;
  }
  pulse(): void {
    this.setLevel(true);
    this.setLevel(false);
  }
}

/** Flat fake guest RAM; accesses outside it throw like an unmapped bus would. */
export class FakeMemory implements PhysicalMemoryAccess {
  readonly bytes: Uint8Array;
  constructor(size: number) {
    this.bytes = new Uint8Array(size);
  }
  read(addr: number, length: number): Uint8Array {
    if (addr < 0 || addr + length > this.bytes.length) throw new RangeError(`unmapped read at ${addr}`);
    return this.bytes.slice(addr, addr + length);
  }
  write(addr: number, data: Uint8Array): void {
    if (addr < 0 || addr + data.length > this.bytes.length) throw new RangeError(`unmapped write at ${addr}`);
    this.bytes.set(data, addr);
  }
}

/** Deep-copies a state record (as a snapshot writer/reader would), so restore cannot share arrays with the source. */
export function cloneState(s: StateRecord): StateRecord {
  return structuredClone(s);
}
