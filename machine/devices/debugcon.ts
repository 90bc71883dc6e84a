/**
 * Bochs/QEMU debug console at port 0xE9: each byte written is output text;
 * reading returns 0xE9 so firmware can detect the port before using it.
 */
import type { AccessSize, PortIoDevice, PortRange } from './device.js';
import { checkVersion, type StateRecord } from '../state.js';
import { allOnes } from './dev-util.js';

export interface DebugconOptions {
  onByte?: (byte: number) => void;
  port?: number;
  /** Value returned by reads (QEMU's `readback` property). */
  readback?: number;
  /** Bytes kept for output(); older output is discarded. Default 1 MiB. */
  keepBytes?: number;
}

const STATE_VERSION = 1;

export class Debugcon implements PortIoDevice {
  readonly name: string;
  readonly snapshotId: string;
  readonly stateVersion = STATE_VERSION;
  readonly ports: readonly PortRange[];

  private readonly onByte: ((byte: number) => void) | undefined;
  private readonly readback: number;
  private readonly keep: number;
  private buf: number[] = [];

  constructor(opts: DebugconOptions = {}) {
    const port = opts.port ?? 0xe9;
    this.ports = [{ base: port, length: 1 }];
    this.onByte = opts.onByte;
    this.readback = (opts.readback ?? 0xe9) & 0xff;
    this.keep = opts.keepBytes ?? 1 << 20;
    this.name = `debugcon@0x${port.toString(16)}`;
    this.snapshotId = this.name;
  }

  /** Output so far (the last keepBytes bytes). */
  output(): Uint8Array {
    return Uint8Array.from(this.buf.length > this.keep ? this.buf.slice(-this.keep) : this.buf);
  }

  /** The output as a byte string (one char per byte, as the serial transcripts): 0x80-0xFF are kept, not replaced. */
  text(): string {
    return Buffer.from(this.output()).toString('latin1');
  }

  ioRead(_port: number, size: AccessSize): number {
    // QEMU accepts only byte accesses here; wider ones fail decode and float high.
    return size === 1 ? this.readback : allOnes(size);
  }

  ioWrite(_port: number, size: AccessSize, value: number): void {
    if (size !== 1) return;
    const b = value & 0xff;
    this.buf.push(b);
    // Trim in chunks so a chatty guest does not pay an O(n) shift per byte.
    if (this.buf.length > this.keep + 4096) this.buf.splice(0, this.buf.length - this.keep);
    this.onByte?.(b);
  }

  saveState(): StateRecord {
    // Output already went to the host; it is not machine state.
    return { version: STATE_VERSION };
  }

  restoreState(state: StateRecord): void {
    checkVersion(state, STATE_VERSION, this.snapshotId);
  }
}
