/**
 * 16550A UART. Register semantics follow QEMU's serial.c (the reference our
 * firmware is also tested on): transmission is instant, so THRE/TEMT are set
 * again right after a THR write and the THR-empty interrupt re-arms.
 *
 * Host input passed to receive() waits in a line queue and enters the chip
 * only when RBR/FIFO has room (QEMU's chardev flow control), so no host byte
 * is ever lost to overrun; loopback bytes can overrun like real hardware.
 */
import type { AccessSize, IrqLine, PortIoDevice, PortRange, TimerHandle, VirtualClock } from './device.js';
import { checkVersion, StateError, stateBoolean, stateBytes, type StateRecord } from '../state.js';
import { readBytewise, stateInt, stateIntOrNull, writeBytewise } from './dev-util.js';

// IER
const IER_RDI = 0x01;
const IER_THRI = 0x02;
const IER_RLSI = 0x04;
const IER_MSI = 0x08;
// IIR
const IIR_NO_INT = 0x01;
const IIR_MSI = 0x00;
const IIR_THRI = 0x02;
const IIR_RDI = 0x04;
const IIR_RLSI = 0x06;
const IIR_CTI = 0x0c;
const IIR_FIFO_BITS = 0xc0;
// FCR
const FCR_FE = 0x01;
const FCR_RFR = 0x02;
const FCR_XFR = 0x04;
// LCR
const LCR_DLAB = 0x80;
// MCR
const MCR_LOOP = 0x10;
const MCR_OUT2 = 0x08;
// LSR
const LSR_DR = 0x01;
const LSR_OE = 0x02;
const LSR_BI = 0x10;
const LSR_THRE = 0x20;
const LSR_TEMT = 0x40;
const LSR_INT_ANY = 0x1e;
// MSR
const MSR_DCD = 0x80;
const MSR_DSR = 0x20;
const MSR_CTS = 0x10;
const MSR_RI = 0x40;
const MSR_ANY_DELTA = 0x0f;

const FIFO_SIZE = 16;
const BAUD_BASE = 115200;
const NS_PER_S = 1_000_000_000;

export interface Uart16550Options {
  clock: VirtualClock;
  irq: IrqLine;
  /** I/O base: 0x3F8 for COM1 (IRQ4), 0x2F8 for COM2 (IRQ3). */
  base?: number;
  onTransmit?: (byte: number) => void;
  /** Fault injection: the chip is absent. Reads float to 0xFF, writes vanish, no IRQ. */
  dead?: boolean;
}

const STATE_VERSION = 1;

export class Uart16550 implements PortIoDevice {
  readonly name: string;
  readonly snapshotId: string;
  readonly stateVersion = STATE_VERSION;
  readonly ports: readonly PortRange[];
  readonly base: number;

  private readonly clock: VirtualClock;
  private readonly irq: IrqLine;
  private readonly dead: boolean;
  private readonly onTransmit: ((byte: number) => void) | undefined;

  private rbr = 0;
  private ier = 0;
  private iir = IIR_NO_INT;
  private fcr = 0;
  private lcr = 0;
  private mcr = MCR_OUT2; // QEMU resets MCR with OUT2 set
  private lsr = LSR_TEMT | LSR_THRE;
  private msr = MSR_DCD | MSR_DSR | MSR_CTS;
  private scr = 0;
  private divisor = 12; // 9600 baud
  private rxFifo: number[] = [];
  private rxTriggerLevel = 1;
  private thrIpending = false;
  private timeoutIpending = false;
  private irqLevel = false;
  /** Host bytes not yet accepted by the chip. */
  private hostQueue: number[] = [];
  private charTimeNs = 0;
  private ctiDeadline: number | null = null;
  private ctiTimer: TimerHandle | null = null;

  constructor(opts: Uart16550Options) {
    this.clock = opts.clock;
    this.irq = opts.irq;
    this.base = opts.base ?? 0x3f8;
    this.dead = opts.dead ?? false;
    this.onTransmit = opts.onTransmit;
    this.ports = [{ base: this.base, length: 8 }];
    const hex = '0x' + this.base.toString(16);
    this.name = `uart16550@${hex}`;
    this.snapshotId = `uart@${hex}`;
    this.updateParameters();
  }

  /** Bytes arriving on the serial line from the host side. */
  receive(bytes: Uint8Array | readonly number[]): void {
    if (this.dead) return;
    for (const b of bytes) this.hostQueue.push(b & 0xff);
    this.pump();
  }

  /**
   * Modem-control inputs from the host side of the line. Changes set the MSR
   * delta bits (trailing edge for RI) and can raise the modem-status interrupt.
   */
  setModemInputs(lines: { cts?: boolean; dsr?: boolean; ri?: boolean; dcd?: boolean }): void {
    if (this.dead) return;
    const old = this.msr;
    let v = old & 0xf0;
    const put = (bit: number, on: boolean | undefined) => {
      if (on !== undefined) v = on ? v | bit : v & ~bit;
    };
    put(MSR_CTS, lines.cts);
    put(MSR_DSR, lines.dsr);
    put(MSR_RI, lines.ri);
    put(MSR_DCD, lines.dcd);
    const changed = old ^ v;
    let delta = old & MSR_ANY_DELTA;
    if (changed & MSR_CTS) delta |= 0x01;
    if (changed & MSR_DSR) delta |= 0x02;
    if (changed & MSR_RI && !(v & MSR_RI)) delta |= 0x04;
    if (changed & MSR_DCD) delta |= 0x08;
    this.msr = v | delta;
    this.updateIrq();
  }

  /** Host bytes still waiting for room in the receiver. */
  pendingInput(): number {
    return this.hostQueue.length;
  }

  ioRead(port: number, size: AccessSize): number {
    return readBytewise(port, size, (p) => this.readReg(p - this.base));
  }

  ioWrite(port: number, size: AccessSize, value: number): void {
    writeBytewise(port, size, value, (p, b) => this.writeReg(p - this.base, b));
  }

  private readReg(reg: number): number {
    if (this.dead || reg < 0 || reg > 7) return 0xff;
    switch (reg) {
      case 0: {
        if (this.lcr & LCR_DLAB) return this.divisor & 0xff;
        let ret: number;
        if (this.fcr & FCR_FE) {
          ret = this.rxFifo.length > 0 ? this.rxFifo.shift()! : 0;
          if (this.rxFifo.length === 0) {
            this.lsr &= ~(LSR_DR | LSR_BI);
            this.cancelCti();
          } else {
            this.armCti();
          }
          this.timeoutIpending = false;
        } else {
          ret = this.rbr;
          this.lsr &= ~(LSR_DR | LSR_BI);
        }
        this.updateIrq();
        this.pump();
        return ret;
      }
      case 1:
        return this.lcr & LCR_DLAB ? (this.divisor >> 8) & 0xff : this.ier;
      case 2: {
        const ret = this.iir;
        // Reading IIR while it reports THR-empty acknowledges that interrupt.
        if ((ret & 0x0f) === IIR_THRI) {
          this.thrIpending = false;
          this.updateIrq();
        }
        return ret;
      }
      case 3:
        return this.lcr;
      case 4:
        return this.mcr;
      case 5: {
        const ret = this.lsr;
        if (this.lsr & (LSR_BI | LSR_OE)) {
          this.lsr &= ~(LSR_BI | LSR_OE);
          this.updateIrq();
        }
        return ret;
      }
      case 6: {
        if (this.mcr & MCR_LOOP) {
          // Loopback: DTR->DSR, RTS->CTS, OUT1->RI, OUT2->DCD.
          return ((this.mcr & 0x0c) << 4) | ((this.mcr & 0x02) << 3) | ((this.mcr & 0x01) << 5);
        }
        const ret = this.msr;
        if (this.msr & MSR_ANY_DELTA) {
          this.msr &= 0xf0;
          this.updateIrq();
        }
        return ret;
      }
      default:
        return this.scr;
    }
  }

  private writeReg(reg: number, val: number): void {
    if (this.dead || reg < 0 || reg > 7) return;
    switch (reg) {
      case 0:
        if (this.lcr & LCR_DLAB) {
          this.divisor = (this.divisor & 0xff00) | val;
          this.updateParameters();
        } else {
          this.transmit(val);
        }
        break;
      case 1:
        if (this.lcr & LCR_DLAB) {
          this.divisor = (this.divisor & 0x00ff) | (val << 8);
          this.updateParameters();
        } else {
          const changed = (this.ier ^ val) & 0x0f;
          this.ier = val & 0x0f;
          // Enabling THRI while THR is empty raises the interrupt again even if it
          // was acknowledged by an IIR read (Windows and QEMU rely on this).
          if (changed & IER_THRI) this.thrIpending = (this.ier & IER_THRI) !== 0 && (this.lsr & LSR_THRE) !== 0;
          if (changed) this.updateIrq();
        }
        break;
      case 2: {
        // Toggling the FIFO enable flushes both FIFOs.
        if ((val ^ this.fcr) & FCR_FE) val |= FCR_XFR | FCR_RFR;
        if (val & FCR_RFR) {
          this.lsr &= ~(LSR_DR | LSR_BI);
          this.cancelCti();
          this.timeoutIpending = false;
          this.rxFifo = [];
        }
        if (val & FCR_XFR) {
          this.lsr |= LSR_THRE;
          this.thrIpending = true;
        }
        this.fcr = val & 0xc9;
        if (this.fcr & FCR_FE) {
          this.iir |= IIR_FIFO_BITS;
          this.rxTriggerLevel = [1, 4, 8, 14][(val >> 6) & 3]!;
        } else {
          this.iir &= ~IIR_FIFO_BITS;
        }
        this.updateIrq();
        this.pump();
        break;
      }
      case 3:
        this.lcr = val;
        this.updateParameters();
        break;
      case 4: {
        const wasLoop = (this.mcr & MCR_LOOP) !== 0;
        this.mcr = val & 0x1f;
        if (wasLoop && !(this.mcr & MCR_LOOP)) this.pump();
        break;
      }
      case 5:
      case 6:
        break; // LSR and MSR are read-only here, as in QEMU
      default:
        this.scr = val;
        break;
    }
  }

  private transmit(byte: number): void {
    this.thrIpending = false;
    this.lsr &= ~(LSR_THRE | LSR_TEMT);
    this.updateIrq();
    if (this.mcr & MCR_LOOP) this.receiveByte(byte);
    else this.onTransmit?.(byte);
    // The shift register empties instantly, which re-arms the THR-empty interrupt.
    this.lsr |= LSR_THRE | LSR_TEMT;
    this.thrIpending = true;
    this.updateIrq();
  }

  /** One byte arriving at the receiver (host line or loopback). */
  private receiveByte(byte: number): void {
    if (this.fcr & FCR_FE) {
      if (this.rxFifo.length < FIFO_SIZE) this.rxFifo.push(byte);
      else this.lsr |= LSR_OE; // overruns do not overwrite FIFO contents
      this.lsr |= LSR_DR;
      this.armCti();
    } else {
      if (this.lsr & LSR_DR) this.lsr |= LSR_OE;
      this.rbr = byte;
      this.lsr |= LSR_DR;
    }
    this.updateIrq();
  }

  private canAccept(): boolean {
    if (this.mcr & MCR_LOOP) return false; // the line is disconnected in loopback
    return this.fcr & FCR_FE ? this.rxFifo.length < FIFO_SIZE : (this.lsr & LSR_DR) === 0;
  }

  private pump(): void {
    while (this.hostQueue.length > 0 && this.canAccept()) this.receiveByte(this.hostQueue.shift()!);
  }

  // ---- character timeout (FIFO mode: data below the trigger level still interrupts) ----

  private armCti(): void {
    this.cancelCti();
    this.scheduleCti(this.clock.nowNs() + 4 * this.charTimeNs);
  }

  private scheduleCti(deadline: number): void {
    this.ctiDeadline = deadline;
    this.ctiTimer = this.clock.schedule(deadline, () => {
      this.ctiTimer = null;
      this.ctiDeadline = null;
      if (this.rxFifo.length > 0) {
        this.timeoutIpending = true;
        this.updateIrq();
      }
    });
  }

  private cancelCti(): void {
    if (this.ctiTimer) this.clock.cancel(this.ctiTimer);
    this.ctiTimer = null;
    this.ctiDeadline = null;
  }

  private updateParameters(): void {
    if (this.divisor === 0) return;
    const parity = this.lcr & 0x08 ? 1 : 0;
    const stop = this.lcr & 0x04 ? 2 : 1;
    const data = (this.lcr & 0x03) + 5;
    const frame = 1 + parity + data + stop;
    const speed = BAUD_BASE / this.divisor;
    this.charTimeNs = Math.floor((NS_PER_S / speed) * frame);
  }

  /** Interrupt identification in priority order; the IRQ line follows "any enabled pending". */
  private updateIrq(): void {
    let id = IIR_NO_INT;
    if (this.ier & IER_RLSI && this.lsr & LSR_INT_ANY) id = IIR_RLSI;
    else if (this.ier & IER_RDI && this.timeoutIpending) id = IIR_CTI;
    else if (this.ier & IER_RDI && this.lsr & LSR_DR && (!(this.fcr & FCR_FE) || this.rxFifo.length >= this.rxTriggerLevel)) id = IIR_RDI;
    else if (this.ier & IER_THRI && this.thrIpending) id = IIR_THRI;
    else if (this.ier & IER_MSI && this.msr & MSR_ANY_DELTA) id = IIR_MSI;
    this.iir = id | (this.iir & 0xf0);
    const level = id !== IIR_NO_INT;
    if (level !== this.irqLevel) {
      this.irqLevel = level;
      this.irq.setLevel(level);
    }
  }

  // ---- inspection ----

  registers(): { ier: number; iir: number; fcr: number; lcr: number; mcr: number; lsr: number; msr: number; scr: number; divisor: number } {
    return { ier: this.ier, iir: this.iir, fcr: this.fcr, lcr: this.lcr, mcr: this.mcr, lsr: this.lsr, msr: this.msr, scr: this.scr, divisor: this.divisor };
  }

  // ---- snapshot ----

  saveState(): StateRecord {
    return {
      version: STATE_VERSION,
      rbr: this.rbr,
      ier: this.ier,
      iir: this.iir,
      fcr: this.fcr,
      lcr: this.lcr,
      mcr: this.mcr,
      lsr: this.lsr,
      msr: this.msr,
      scr: this.scr,
      divisor: this.divisor,
      rxFifo: Uint8Array.from(this.rxFifo),
      rxTriggerLevel: this.rxTriggerLevel,
      thrIpending: this.thrIpending,
      timeoutIpending: this.timeoutIpending,
      irqLevel: this.irqLevel,
      hostQueue: Uint8Array.from(this.hostQueue),
      ctiDeadline: this.ctiDeadline,
    };
  }

  restoreState(state: StateRecord): void {
    const id = this.snapshotId;
    checkVersion(state, STATE_VERSION, id);
    const rbr = stateInt(state, 'rbr', id, 0, 0xff);
    const ier = stateInt(state, 'ier', id, 0, 0x0f);
    const iir = stateInt(state, 'iir', id, 0, 0xff);
    const fcr = stateInt(state, 'fcr', id, 0, 0xff);
    const lcr = stateInt(state, 'lcr', id, 0, 0xff);
    const mcr = stateInt(state, 'mcr', id, 0, 0x1f);
    const lsr = stateInt(state, 'lsr', id, 0, 0xff);
    const msr = stateInt(state, 'msr', id, 0, 0xff);
    const scr = stateInt(state, 'scr', id, 0, 0xff);
    const divisor = stateInt(state, 'divisor', id, 0, 0xffff);
    const rxFifo = stateBytes(state, 'rxFifo', id);
    if (rxFifo.length > FIFO_SIZE) throw new StateError(id, 'rxFifo', `more than ${FIFO_SIZE} bytes`);
    const rxTriggerLevel = stateInt(state, 'rxTriggerLevel', id, 1, 14);
    const thrIpending = stateBoolean(state, 'thrIpending', id);
    const timeoutIpending = stateBoolean(state, 'timeoutIpending', id);
    const irqLevel = stateBoolean(state, 'irqLevel', id);
    const hostQueue = stateBytes(state, 'hostQueue', id);
    const ctiDeadline = stateIntOrNull(state, 'ctiDeadline', id, 0, Number.MAX_SAFE_INTEGER);

    this.cancelCti();
    this.rbr = rbr;
    this.ier = ier;
    this.iir = iir;
    this.fcr = fcr;
    this.lcr = lcr;
    this.mcr = mcr;
    this.lsr = lsr;
    this.msr = msr;
    this.scr = scr;
    this.divisor = divisor;
    this.rxFifo = [...rxFifo];
    this.rxTriggerLevel = rxTriggerLevel;
    this.thrIpending = thrIpending;
    this.timeoutIpending = timeoutIpending;
    this.irqLevel = irqLevel;
    this.hostQueue = [...hostQueue];
    this.updateParameters();
    if (ctiDeadline !== null) this.scheduleCti(ctiDeadline);
  }
}
