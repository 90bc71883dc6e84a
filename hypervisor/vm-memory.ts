/**
 * A VM's guest-physical address space: guest RAM in host frames, mapped by
 * the VM's EPT tables (authoritative: every guest access and every guest
 * page walk goes through them), plus MMIO windows and an open-bus page for
 * guest-physical addresses that hold nothing.
 */
import type { CpuMemory, SecondLevelTranslation } from '../machine/cpu/x86-cpu.js';
import type { EptTables } from './ept/ept-tables.js';

export interface VmMemory {
  readonly ramBytes: number;
  /** The VM's second-level tables (authoritative for every guest access). */
  readonly ept: EptTables;
  /** Guest-physical reads/writes through the EPT (for page walks and event delivery). */
  readonly walkMemory: CpuMemory;
  readonly secondLevel: SecondLevelTranslation;
  /** Loader writes into guest RAM (translated through the EPT). */
  write(gpa: number, data: Uint8Array): void;
  read(gpa: number, length: number): Uint8Array;
  /** Map a guest-physical page to a host MMIO window (device registers). */
  mapMmioWindow(gpa: number, hpa: number): void;
  /** Make an empty guest-physical page read as all-ones (open bus), as on a PC. */
  mapOpenBus(gpaPage: number): void;
  isRam(gpa: number): boolean;
}
