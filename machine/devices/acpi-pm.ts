/**
 * The ACPI fixed-hardware registers our FADT points at, at QEMU pc's PIIX4
 * addresses: PM1a event (status/enable, 0x600), PM1a control (0x604), the
 * 24-bit PM timer at 3.579545 MHz on virtual time (0x608), and GPE0
 * (status/enable, 0xAFE0). SCI_EN reads 1 from reset (the FADT has no
 * SMI_CMD, so the OS never asks for ACPI mode); writing SLP_EN with SLP_TYP 0
 * (the DSDT's \_S5) powers the machine off, as QEMU's PIIX4 does. No event
 * raises an SCI: nothing here (power button, timer overflow, GPE) signals one.
 */
import type { AccessSize, PortIoDevice, PortRange, VirtualClock } from './device.js';
import { checkVersion, type StateRecord } from '../state.js';
import { allOnes, mulDivFloor, stateInt } from './dev-util.js';

export const PM_TIMER_HZ = 3_579_545;
const SCI_EN = 1;
const SLP_EN = 1 << 13;
const STATE_VERSION = 1;

export interface AcpiPmOptions {
  clock: VirtualClock;
  /** SLP_EN with SLP_TYP 0 (S5). */
  onPowerOff: () => void;
  pmBase?: number;
  gpe0Base?: number;
}

export class AcpiPm implements PortIoDevice {
  readonly name = 'acpi-pm';
  readonly snapshotId = 'acpi-pm';
  readonly stateVersion = STATE_VERSION;
  readonly ports: readonly PortRange[];
  private readonly clock: VirtualClock;
  private readonly onPowerOff: () => void;
  private readonly pmBase: number;
  private readonly gpe0Base: number;
  private pm1Enable = 0;
  private pm1Control = SCI_EN;
  private gpe0Enable = 0;

  constructor(opts: AcpiPmOptions) {
    this.clock = opts.clock;
    this.onPowerOff = opts.onPowerOff;
    this.pmBase = opts.pmBase ?? 0x600;
    this.gpe0Base = opts.gpe0Base ?? 0xafe0;
    this.ports = [
      { base: this.pmBase, length: 12 },
      { base: this.gpe0Base, length: 4 },
    ];
  }

  /** The PM timer's 24-bit count. */
  timer(): number {
    return mulDivFloor(this.clock.nowNs(), PM_TIMER_HZ, 1_000_000_000) & 0xffffff;
  }

  ioRead(port: number, size: AccessSize): number {
    let v = 0;
    for (let i = 0; i < size; i++) v |= this.readByte(port + i) << (8 * i);
    return size === 4 ? v >>> 0 : v;
  }

  ioWrite(port: number, size: AccessSize, value: number): void {
    if (port >= this.gpe0Base) {
      for (let i = 0; i < size; i++) if (port + i - this.gpe0Base >= 2) this.gpe0Enable = setByte(this.gpe0Enable, port + i - this.gpe0Base - 2, value >>> (8 * i));
      return;
    }
    const off = port - this.pmBase;
    if (off === 2 || (off === 0 && size === 4)) this.pm1Enable = (off === 0 ? value >>> 16 : value) & 0xffff; // status bits are write-1-to-clear: none ever set
    else if (off === 3) this.pm1Enable = setByte(this.pm1Enable, 1, value);
    else if (off === 4 || off === 5) {
      const v = off === 4 ? value & 0xffff : ((value & 0xff) << 8) | (this.pm1Control & 0xff);
      this.pm1Control = (v & ~SLP_EN) | SCI_EN;
      if (v & SLP_EN && ((v >> 10) & 7) === 0) this.onPowerOff();
    }
  }

  private readByte(port: number): number {
    if (port >= this.gpe0Base) {
      const o = port - this.gpe0Base;
      return o >= 2 ? (this.gpe0Enable >> (8 * (o - 2))) & 0xff : 0;
    }
    const off = port - this.pmBase;
    if (off < 2) return 0; // PM1 status: no event
    if (off < 4) return (this.pm1Enable >> (8 * (off - 2))) & 0xff;
    if (off < 6) return (this.pm1Control >> (8 * (off - 4))) & 0xff;
    if (off < 8) return allOnes(1);
    return (this.timer() >>> (8 * (off - 8))) & 0xff;
  }

  saveState(): StateRecord {
    return { version: STATE_VERSION, pm1Enable: this.pm1Enable, pm1Control: this.pm1Control, gpe0Enable: this.gpe0Enable };
  }

  restoreState(state: StateRecord): void {
    const c = this.snapshotId;
    checkVersion(state, STATE_VERSION, c);
    this.pm1Enable = stateInt(state, 'pm1Enable', c, 0, 0xffff);
    this.pm1Control = stateInt(state, 'pm1Control', c, 0, 0xffff) | SCI_EN;
    this.gpe0Enable = stateInt(state, 'gpe0Enable', c, 0, 0xffff);
  }
}

function setByte(word: number, index: number, byte: number): number {
  return (word & ~(0xff << (8 * index))) | ((byte & 0xff) << (8 * index));
}
