/**
 * Contracts between device models and the platform. Devices are plain
 * TypeScript objects driven by the CPU's port-I/O and MMIO hooks and by
 * the virtual clock. They never touch Unicorn directly.
 */
import type { Snapshottable } from '../state.js';

export type AccessSize = 1 | 2 | 4 | 8;

/** A contiguous range of I/O ports claimed by a device. */
export interface PortRange {
  readonly base: number;
  readonly length: number;
}

export interface PortIoDevice extends Snapshottable {
  readonly name: string;
  readonly ports: readonly PortRange[];
  /** Returns the value read; unclaimed bits should read as 1s like an open bus. */
  ioRead(port: number, size: AccessSize): number;
  ioWrite(port: number, size: AccessSize, value: number): void;
}

export interface MmioRange {
  readonly base: number;
  readonly length: number;
}

export interface MmioDevice extends Snapshottable {
  readonly name: string;
  readonly mmio: readonly MmioRange[];
  /** `offset` is relative to the range base. */
  mmioRead(offset: number, size: AccessSize): number;
  mmioWrite(offset: number, size: AccessSize, value: number): void;
}

/** An interrupt request line into an interrupt controller (edge or level). */
export interface IrqLine {
  setLevel(high: boolean): void;
  /** Raise then lower: an edge for edge-triggered inputs. */
  pulse(): void;
}

/** Guest-physical memory as seen by devices doing DMA. Writes invalidate translated code. */
export interface PhysicalMemoryAccess {
  read(addr: number, length: number): Uint8Array;
  write(addr: number, data: Uint8Array): void;
}

export type TimerCallback = (nowNs: number) => void;

export interface TimerHandle {
  readonly id: number;
}

/**
 * Virtual time in nanoseconds. It advances with executed guest code and jumps
 * to the next deadline when every CPU sleeps, so the same image and config give
 * the same device-visible timing on every run.
 */
export interface VirtualClock {
  nowNs(): number;
  /** Fire `cb` once when virtual time reaches `deadlineNs`. */
  schedule(deadlineNs: number, cb: TimerCallback): TimerHandle;
  cancel(handle: TimerHandle): void;
}
