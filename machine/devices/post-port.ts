/**
 * POST code latch at port 0x80: every byte the firmware writes is recorded
 * with its virtual timestamp for the boot-progress view.
 */
import type { AccessSize, PortIoDevice, PortRange, VirtualClock } from './device.js';
import { checkVersion, StateError, stateNumbers, type StateRecord } from '../state.js';
import { stateInt } from './dev-util.js';

export interface PostCode {
  readonly code: number;
  readonly atNs: number;
}

export interface PostPortOptions {
  clock: VirtualClock;
  onCode?: (code: number, atNs: number) => void;
  port?: number;
  /**
   * Oldest entries are dropped beyond this many (Linux and others use port 0x80
   * writes as an I/O delay, so the log must stay bounded). Default 16384.
   */
  maxRecords?: number;
}

const STATE_VERSION = 1;

export class PostPort implements PortIoDevice {
  readonly name: string;
  readonly snapshotId: string;
  readonly stateVersion = STATE_VERSION;
  readonly ports: readonly PortRange[];

  private readonly clock: VirtualClock;
  private readonly onCode: ((code: number, atNs: number) => void) | undefined;
  private readonly maxRecords: number;
  private log: PostCode[] = [];
  private droppedCount = 0;
  private last = 0;

  constructor(opts: PostPortOptions) {
    this.clock = opts.clock;
    this.onCode = opts.onCode;
    this.maxRecords = opts.maxRecords ?? 16384;
    const port = opts.port ?? 0x80;
    this.ports = [{ base: port, length: 1 }];
    this.name = `post@0x${port.toString(16)}`;
    this.snapshotId = this.name;
  }

  /** The latched code (last byte written), 0 before any write. */
  lastCode(): number {
    return this.last;
  }

  /** Recorded writes, oldest first. */
  codes(): readonly PostCode[] {
    return this.log.slice();
  }

  /** How many old records were discarded to respect maxRecords. */
  dropped(): number {
    return this.droppedCount;
  }

  ioRead(_port: number, size: AccessSize): number {
    // The latch is one byte wide; upper bytes of a wider read float high.
    if (size === 1) return this.last;
    return ((size === 2 ? 0xff00 : 0xffffff00) | this.last) >>> 0;
  }

  ioWrite(_port: number, _size: AccessSize, value: number): void {
    const code = value & 0xff;
    const atNs = this.clock.nowNs();
    this.last = code;
    this.log.push({ code, atNs });
    if (this.log.length > this.maxRecords) {
      this.log.shift();
      this.droppedCount++;
    }
    this.onCode?.(code, atNs);
  }

  saveState(): StateRecord {
    return {
      version: STATE_VERSION,
      last: this.last,
      dropped: this.droppedCount,
      codes: this.log.map((r) => r.code),
      times: this.log.map((r) => r.atNs),
    };
  }

  restoreState(state: StateRecord): void {
    const id = this.snapshotId;
    checkVersion(state, STATE_VERSION, id);
    const last = stateInt(state, 'last', id, 0, 0xff);
    const dropped = stateInt(state, 'dropped', id, 0, Number.MAX_SAFE_INTEGER);
    const codes = stateNumbers(state, 'codes', id);
    const times = stateNumbers(state, 'times', id, codes.length);
    codes.forEach((c, i) => {
      if (!Number.isInteger(c) || c < 0 || c > 0xff) throw new StateError(id, `codes[${i}]`, `not a byte: ${c}`);
    });
    this.last = last;
    this.droppedCount = dropped;
    this.log = codes.map((code, i) => ({ code, atNs: times[i]! }));
  }
}
