/**
 * I/O APIC (82093AA programming model, version 0x20 as QEMU's ioapic), MMIO at
 * 0xFEC00000: IOREGSEL at +0x00, IOWIN at +0x10, the directed-EOI register at
 * +0x40. 24 redirection entries, all masked at reset. Edge inputs latch a
 * request on the rising edge and deliver it once unmasked; a level input
 * delivers while high, sets Remote IRR, and delivers again only after the
 * LAPIC's EOI for that vector clears it (eoi()). Polarity is stored and, as in
 * QEMU, not applied: ISA lines are active high. Messages leave through
 * `deliver`; the board routes them to the LAPICs by destination.
 */
import type { AccessSize, IrqLine, MmioDevice, MmioRange } from './device.js';
import { checkVersion, stateNumbers, StateError, type StateRecord } from '../state.js';
import { stateInt } from './dev-util.js';
import type { IpiDeliveryMode } from './lapic.js';

export const IOAPIC_DEFAULT_BASE = 0xfec00000;
export const IOAPIC_PINS = 24;
export const IOAPIC_VERSION = 0x20 | ((IOAPIC_PINS - 1) << 16);

/** One interrupt message from a redirection entry. */
export interface IoApicMessage {
  readonly pin: number;
  readonly vector: number;
  readonly mode: IpiDeliveryMode;
  readonly destinationMode: 'physical' | 'logical';
  /** RTE[63:56]: an APIC ID (physical) or a logical destination set. */
  readonly destination: number;
  readonly trigger: 'edge' | 'level';
}

export interface IoApicOptions {
  deliver: (msg: IoApicMessage) => void;
  base?: number;
  id?: number;
}

const REG_ID = 0x00;
const REG_VERSION = 0x01;
const REG_ARB = 0x02;
const REG_REDTBL = 0x10;

const RTE_DEST_LOGICAL = 1 << 11;
const RTE_DELIVERY_STATUS = 1 << 12;
const RTE_REMOTE_IRR = 1 << 14;
const RTE_LEVEL = 1 << 15;
const RTE_MASKED = 1 << 16;
/** Writable low-dword bits: vector, delivery mode, destination mode, polarity, trigger, mask. */
const RTE_LO_WRITABLE = 0x0001afff;

const MODES: readonly IpiDeliveryMode[] = ['fixed', 'lowest-priority', 'smi', 'reserved', 'nmi', 'init', 'reserved', 'extint'];
const STATE_VERSION = 1;

export class IoApic implements MmioDevice {
  readonly name = 'ioapic';
  readonly snapshotId = 'ioapic';
  readonly stateVersion = STATE_VERSION;
  readonly mmio: readonly MmioRange[];

  private readonly deliverMsg: (msg: IoApicMessage) => void;
  private readonly initialId: number;
  private id = 0;
  private ioregsel = 0;
  /** Requests waiting to be delivered: edge inputs latched, level inputs while high. */
  private irr = 0;
  /** Current input levels (a level entry re-delivers after EOI while its line stays high). */
  private levels = 0;
  private readonly lo = new Uint32Array(IOAPIC_PINS);
  private readonly hi = new Uint32Array(IOAPIC_PINS);

  constructor(opts: IoApicOptions) {
    this.deliverMsg = opts.deliver;
    this.initialId = opts.id ?? 0;
    this.mmio = [{ base: opts.base ?? IOAPIC_DEFAULT_BASE, length: 0x1000 }];
    this.reset();
  }

  reset(): void {
    this.id = this.initialId;
    this.ioregsel = 0;
    this.irr = 0;
    this.levels = 0;
    this.lo.fill(RTE_MASKED);
    this.hi.fill(0);
  }

  /** An input line (ISA IRQ n arrives at pin n, except IRQ 0 which the board sends to pin 2). */
  line(pin: number): IrqLine {
    if (!Number.isInteger(pin) || pin < 0 || pin >= IOAPIC_PINS) throw new RangeError(`ioapic: pin ${pin} out of range 0-${IOAPIC_PINS - 1}`);
    return {
      setLevel: (high) => this.setIrq(pin, high),
      pulse: () => {
        this.setIrq(pin, true);
        this.setIrq(pin, false);
      },
    };
  }

  setIrq(pin: number, high: boolean): void {
    const bit = 1 << pin;
    const was = (this.levels & bit) !== 0;
    this.levels = high ? this.levels | bit : this.levels & ~bit;
    if (this.lo[pin]! & RTE_LEVEL) {
      this.irr = high ? this.irr | bit : this.irr & ~bit;
    } else if (high && !was) {
      this.irr |= bit;
    }
    if (high) this.service();
  }

  /** The LAPICs' EOI of a level-triggered vector: clears Remote IRR of the entries using it. */
  eoi(vector: number): void {
    let again = false;
    for (let pin = 0; pin < IOAPIC_PINS; pin++) {
      const l = this.lo[pin]!;
      if ((l & 0xff) !== (vector & 0xff) || !(l & RTE_REMOTE_IRR)) continue;
      this.lo[pin] = l & ~RTE_REMOTE_IRR;
      if (l & RTE_LEVEL && this.levels & (1 << pin)) again = true;
    }
    if (again) this.service();
  }

  private service(): void {
    for (let pin = 0; pin < IOAPIC_PINS; pin++) {
      const bit = 1 << pin;
      if (!(this.irr & bit)) continue;
      const l = this.lo[pin]!;
      if (l & RTE_MASKED) continue;
      const level = (l & RTE_LEVEL) !== 0;
      if (level) {
        if (l & RTE_REMOTE_IRR) continue;
        // Fixed and lowest-priority level messages wait for an EOI; NMI/INIT/ExtINT have none (as QEMU).
        const mode = (l >> 8) & 7;
        if (mode === 0 || mode === 1) this.lo[pin] = l | RTE_REMOTE_IRR;
      } else {
        this.irr &= ~bit;
      }
      this.deliverMsg({
        pin,
        vector: l & 0xff,
        mode: MODES[(l >> 8) & 7]!,
        destinationMode: l & RTE_DEST_LOGICAL ? 'logical' : 'physical',
        destination: this.hi[pin]! >>> 24,
        trigger: level ? 'level' : 'edge',
      });
    }
  }

  // ---- MMIO ----

  mmioRead(offset: number, size: AccessSize): number {
    switch (offset & 0xff) {
      case 0x00:
        return this.ioregsel;
      case 0x10:
        return size === 4 ? this.readRegister(this.ioregsel) : 0;
      default:
        return 0;
    }
  }

  mmioWrite(offset: number, size: AccessSize, value: number): void {
    switch (offset & 0xff) {
      case 0x00:
        this.ioregsel = value & 0xff;
        break;
      case 0x10:
        if (size === 4) this.writeRegister(this.ioregsel, value >>> 0);
        break;
      case 0x40:
        this.eoi(value & 0xff);
        break;
      default:
        break;
    }
  }

  private readRegister(index: number): number {
    if (index === REG_ID) return (this.id << 24) >>> 0;
    if (index === REG_VERSION) return IOAPIC_VERSION;
    if (index === REG_ARB) return 0; // as QEMU
    const n = (index - REG_REDTBL) >> 1;
    if (index >= REG_REDTBL && n < IOAPIC_PINS) return (index & 1 ? this.hi[n]! : this.lo[n]!) >>> 0;
    return 0xffffffff;
  }

  private writeRegister(index: number, v: number): void {
    if (index === REG_ID) {
      this.id = (v >>> 24) & 0xf;
      return;
    }
    const n = (index - REG_REDTBL) >> 1;
    if (index < REG_REDTBL || n >= IOAPIC_PINS) return; // version, arbitration: read-only
    if (index & 1) {
      this.hi[n] = (v & 0xff000000) >>> 0;
      return;
    }
    const ro = this.lo[n]! & (RTE_DELIVERY_STATUS | RTE_REMOTE_IRR);
    let lo = ((v & RTE_LO_WRITABLE) | ro) >>> 0;
    // An edge entry has no Remote IRR (QEMU clears it when the trigger mode becomes edge).
    if (!(lo & RTE_LEVEL)) lo &= ~RTE_REMOTE_IRR;
    this.lo[n] = lo;
    // A level input that is high is pending again under its new settings.
    if (lo & RTE_LEVEL && this.levels & (1 << n)) this.irr |= 1 << n;
    this.service();
  }

  // ---- inspection ----

  registers(): { id: number; irr: number; levels: number; redirection: Array<{ lo: number; hi: number }> } {
    return { id: this.id, irr: this.irr, levels: this.levels, redirection: [...this.lo].map((lo, i) => ({ lo, hi: this.hi[i]! })) };
  }

  // ---- snapshot ----

  saveState(): StateRecord {
    return { version: STATE_VERSION, id: this.id, ioregsel: this.ioregsel, irr: this.irr, levels: this.levels, lo: [...this.lo], hi: [...this.hi] };
  }

  restoreState(state: StateRecord): void {
    const c = this.snapshotId;
    checkVersion(state, STATE_VERSION, c);
    const id = stateInt(state, 'id', c, 0, 0xf);
    const ioregsel = stateInt(state, 'ioregsel', c, 0, 0xff);
    const mask = 2 ** IOAPIC_PINS - 1;
    const irr = stateInt(state, 'irr', c, 0, mask);
    const levels = stateInt(state, 'levels', c, 0, mask);
    const words = (field: string): number[] => {
      const a = stateNumbers(state, field, c, IOAPIC_PINS);
      a.forEach((x, i) => {
        if (!Number.isInteger(x) || x < 0 || x > 0xffffffff) throw new StateError(c, `${field}[${i}]`, `out of range: ${x}`);
      });
      return a;
    };
    const lo = words('lo');
    const hi = words('hi');
    this.id = id;
    this.ioregsel = ioregsel;
    this.irr = irr;
    this.levels = levels;
    this.lo.set(lo);
    this.hi.set(hi);
  }
}
