/**
 * QEMU's isa-debug-exit as configured by `-device isa-debug-exit,iobase=0xf4,iosize=0x04`:
 * writing value v asks the emulator to exit with status (v << 1) | 1, so a
 * test image can report pass/fail. Odd statuses distinguish it from a normal exit.
 */
import type { AccessSize, PortIoDevice, PortRange } from './device.js';
import { checkVersion, type StateRecord } from '../state.js';
import { allOnes } from './dev-util.js';

export interface DebugExitOptions {
  /** `status` is what QEMU would pass to exit(); a shell sees status & 0xFF. */
  onExit?: (status: number, value: number) => void;
  base?: number;
  size?: number;
}

export interface DebugExitRequest {
  readonly status: number;
  readonly value: number;
}

const STATE_VERSION = 1;

export class DebugExit implements PortIoDevice {
  readonly name: string;
  readonly snapshotId: string;
  readonly stateVersion = STATE_VERSION;
  readonly ports: readonly PortRange[];

  private readonly onExit: ((status: number, value: number) => void) | undefined;
  private request: DebugExitRequest | null = null;

  constructor(opts: DebugExitOptions = {}) {
    const base = opts.base ?? 0xf4;
    this.ports = [{ base, length: opts.size ?? 4 }];
    this.onExit = opts.onExit;
    this.name = `debug-exit@0x${base.toString(16)}`;
    this.snapshotId = this.name;
  }

  /** The first exit requested, if any (the platform may keep running in tests). */
  exitRequest(): DebugExitRequest | null {
    return this.request;
  }

  ioRead(_port: number, size: AccessSize): number {
    return allOnes(size); // QEMU's device has no read handler
  }

  ioWrite(_port: number, _size: AccessSize, value: number): void {
    const v = value >>> 0;
    const status = ((v << 1) | 1) >>> 0; // C int arithmetic: the top bit of v is shifted out
    if (!this.request) this.request = { status, value: v };
    this.onExit?.(status, v);
  }

  saveState(): StateRecord {
    return { version: STATE_VERSION };
  }

  restoreState(state: StateRecord): void {
    checkVersion(state, STATE_VERSION, this.snapshotId);
  }
}
