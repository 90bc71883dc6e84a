/**
 * Dual 8259A programmable interrupt controller (master at 0x20, slave at
 * 0xA0, cascaded on master IR2) plus the PIIX/ICH edge/level control
 * registers (ELCR) at 0x4D0/0x4D1. Register behaviour follows QEMU's i8259
 * model, which firmware is also tested against.
 */
import type { AccessSize, IrqLine, PortIoDevice, PortRange } from './device.js';
import { checkVersion, StateError, stateBoolean, type StateRecord } from '../state.js';
import { readBytewise, stateInt, stateRecordList, writeBytewise } from './dev-util.js';

/** One 8259A chip. Fields mirror the chip's internal registers and init state machine. */
class PicChip {
  irr = 0;
  imr = 0;
  isr = 0;
  /** Last seen input levels, for edge detection. */
  lastIrr = 0;
  priorityAdd = 0;
  irqBase = 0;
  readRegSelect = false;
  poll = false;
  specialMask = false;
  /** 0: operational, 1: expect ICW2, 2: expect ICW3, 3: expect ICW4. */
  initState = 0;
  autoEoi = false;
  rotateOnAutoEoi = false;
  specialFullyNested = false;
  init4 = false;
  singleMode = false;
  elcr = 0;
  /** Vector base is only meaningful once ICW1..ICWn completed; until then INTR stays low. */
  initialised = false;

  constructor(
    readonly master: boolean,
    readonly elcrMask: number,
  ) {}

  /** Power-on/ICW1 reset of everything but ELCR (ELCR is a chipset register). */
  initReset(): void {
    this.lastIrr = 0;
    this.irr &= this.elcr;
    this.imr = 0;
    this.isr = 0;
    this.priorityAdd = 0;
    this.irqBase = 0;
    this.readRegSelect = false;
    this.poll = false;
    this.specialMask = false;
    this.initState = 0;
    this.autoEoi = false;
    this.rotateOnAutoEoi = false;
    this.specialFullyNested = false;
    this.init4 = false;
    this.singleMode = false;
    this.initialised = false;
  }

  /** Highest priority found in mask (0 = highest), 8 if none. */
  priority(mask: number): number {
    if (mask === 0) return 8;
    let p = 0;
    while ((mask & (1 << ((p + this.priorityAdd) & 7))) === 0) p++;
    return p;
  }

  /** The IRQ (0..7) this chip wants to signal, or -1. */
  pendingIrq(): number {
    const p = this.priority(this.irr & ~this.imr);
    if (p === 8) return -1;
    let mask = this.isr;
    if (this.specialMask) mask &= ~this.imr;
    // Special fully nested mode: an in-service slave does not block further slave requests.
    if (this.specialFullyNested && this.master) mask &= ~(1 << 2);
    const cur = this.priority(mask);
    return p < cur ? (p + this.priorityAdd) & 7 : -1;
  }

  output(): boolean {
    return this.initialised && this.pendingIrq() >= 0;
  }

  setInput(irq: number, level: boolean): void {
    const mask = 1 << irq;
    if (this.elcr & mask) {
      if (level) {
        this.irr |= mask;
        this.lastIrr |= mask;
      } else {
        this.irr &= ~mask;
        this.lastIrr &= ~mask;
      }
    } else if (level) {
      if ((this.lastIrr & mask) === 0) this.irr |= mask;
      this.lastIrr |= mask;
    } else {
      this.lastIrr &= ~mask;
    }
  }

  intack(irq: number): void {
    if (this.autoEoi) {
      if (this.rotateOnAutoEoi) this.priorityAdd = (irq + 1) & 7;
    } else {
      this.isr |= 1 << irq;
    }
    // A level-triggered request stays in IRR while the line is high.
    if (!(this.elcr & (1 << irq))) this.irr &= ~(1 << irq);
  }

  writeCommand(val: number): void {
    if (val & 0x10) {
      // ICW1
      this.initReset();
      this.initState = 1;
      this.init4 = (val & 1) !== 0;
      this.singleMode = (val & 2) !== 0;
    } else if (val & 0x08) {
      // OCW3
      if (val & 0x04) this.poll = true;
      if (val & 0x02) this.readRegSelect = (val & 1) !== 0;
      if (val & 0x40) this.specialMask = ((val >> 5) & 1) !== 0;
    } else {
      // OCW2
      const cmd = val >> 5;
      switch (cmd) {
        case 0:
        case 4:
          this.rotateOnAutoEoi = cmd >> 2 !== 0;
          break;
        case 1: // non-specific EOI
        case 5: {
          // rotate on non-specific EOI
          const p = this.priority(this.isr);
          if (p !== 8) {
            const irq = (p + this.priorityAdd) & 7;
            this.isr &= ~(1 << irq);
            if (cmd === 5) this.priorityAdd = (irq + 1) & 7;
          }
          break;
        }
        case 3: // specific EOI
          this.isr &= ~(1 << (val & 7));
          break;
        case 6: // set priority
          this.priorityAdd = (val + 1) & 7;
          break;
        case 7: {
          // rotate on specific EOI
          const irq = val & 7;
          this.isr &= ~(1 << irq);
          this.priorityAdd = (irq + 1) & 7;
          break;
        }
        default:
          break;
      }
    }
  }

  writeData(val: number): void {
    switch (this.initState) {
      case 0:
        this.imr = val;
        break;
      case 1:
        this.irqBase = val & 0xf8;
        this.initState = this.singleMode ? (this.init4 ? 3 : 0) : 2;
        break;
      case 2:
        this.initState = this.init4 ? 3 : 0;
        break;
      case 3:
        this.specialFullyNested = ((val >> 4) & 1) !== 0;
        this.autoEoi = ((val >> 1) & 1) !== 0;
        this.initState = 0;
        break;
    }
    if (this.initState === 0) this.initialised = true;
  }

  save(): StateRecord {
    return {
      irr: this.irr,
      imr: this.imr,
      isr: this.isr,
      lastIrr: this.lastIrr,
      priorityAdd: this.priorityAdd,
      irqBase: this.irqBase,
      readRegSelect: this.readRegSelect,
      poll: this.poll,
      specialMask: this.specialMask,
      initState: this.initState,
      autoEoi: this.autoEoi,
      rotateOnAutoEoi: this.rotateOnAutoEoi,
      specialFullyNested: this.specialFullyNested,
      init4: this.init4,
      singleMode: this.singleMode,
      elcr: this.elcr,
      initialised: this.initialised,
    };
  }

  restore(r: StateRecord, comp: string): void {
    this.irr = stateInt(r, 'irr', comp, 0, 0xff);
    this.imr = stateInt(r, 'imr', comp, 0, 0xff);
    this.isr = stateInt(r, 'isr', comp, 0, 0xff);
    this.lastIrr = stateInt(r, 'lastIrr', comp, 0, 0xff);
    this.priorityAdd = stateInt(r, 'priorityAdd', comp, 0, 7);
    this.irqBase = stateInt(r, 'irqBase', comp, 0, 0xf8);
    if (this.irqBase & 7) throw new StateError(comp, 'irqBase', 'low 3 bits must be 0');
    this.readRegSelect = stateBoolean(r, 'readRegSelect', comp);
    this.poll = stateBoolean(r, 'poll', comp);
    this.specialMask = stateBoolean(r, 'specialMask', comp);
    this.initState = stateInt(r, 'initState', comp, 0, 3);
    this.autoEoi = stateBoolean(r, 'autoEoi', comp);
    this.rotateOnAutoEoi = stateBoolean(r, 'rotateOnAutoEoi', comp);
    this.specialFullyNested = stateBoolean(r, 'specialFullyNested', comp);
    this.init4 = stateBoolean(r, 'init4', comp);
    this.singleMode = stateBoolean(r, 'singleMode', comp);
    this.elcr = stateInt(r, 'elcr', comp, 0, 0xff);
    if (this.elcr & ~this.elcrMask) throw new StateError(comp, 'elcr', `bits outside mask 0x${this.elcrMask.toString(16)}`);
    this.initialised = stateBoolean(r, 'initialised', comp);
  }
}

export interface Pic8259Options {
  /** Called whenever the master's INTR output changes level (e.g. to wake a halted CPU). */
  onIntrChange?: (level: boolean) => void;
}

/** Which registers the inspection UI can show for one chip. */
export interface PicChipView {
  readonly irr: number;
  readonly imr: number;
  readonly isr: number;
  readonly elcr: number;
  readonly vectorBase: number;
  readonly initialised: boolean;
}

const STATE_VERSION = 1;

export class Pic8259 implements PortIoDevice {
  readonly name = 'pic8259';
  readonly snapshotId = 'pic';
  readonly stateVersion = STATE_VERSION;
  readonly ports: readonly PortRange[] = [
    { base: 0x20, length: 2 },
    { base: 0xa0, length: 2 },
    { base: 0x4d0, length: 2 },
  ];

  // ELCR masks as on PIIX: IRQ0/1/2/8/13 are always edge-triggered.
  private master = new PicChip(true, 0xf8);
  private slave = new PicChip(false, 0xde);
  private readonly lines: IrqLine[] = [];
  private intr = false;
  private readonly onIntrChange: ((level: boolean) => void) | undefined;

  constructor(opts: Pic8259Options = {}) {
    this.onIntrChange = opts.onIntrChange;
    for (let i = 0; i < 16; i++) {
      this.lines.push({
        setLevel: (high: boolean) => this.setIrq(i, high),
        pulse: () => {
          this.setIrq(i, true);
          this.setIrq(i, false);
        },
      });
    }
  }

  /** Drive ISA IRQ `irq` (0..15). Edge-triggered inputs latch on a rising edge. */
  setIrq(irq: number, level: boolean): void {
    if (!Number.isInteger(irq) || irq < 0 || irq > 15) throw new RangeError(`pic: IRQ ${irq} out of range`);
    if (irq < 8) this.master.setInput(irq, level);
    else this.slave.setInput(irq - 8, level);
    this.update();
  }

  irqLine(n: number): IrqLine {
    const l = this.lines[n];
    if (!l) throw new RangeError(`pic: IRQ ${n} out of range`);
    return l;
  }

  /** The master's INTR output. */
  hasInterrupt(): boolean {
    return this.master.output();
  }

  /**
   * INTA cycle: returns the vector and updates ISR/IRR. With nothing pending the
   * chip answers with a spurious IRQ7 (or IRQ15 via the slave) vector and sets no ISR bit
   * (a spurious slave IRQ still marks IR2 in service on the master, as on hardware).
   */
  acknowledge(): number {
    const m = this.master;
    const s = this.slave;
    let vector: number;
    const irq = m.pendingIrq();
    if (irq >= 0) {
      if (irq === 2) {
        let irq2 = s.pendingIrq();
        if (irq2 >= 0) s.intack(irq2);
        else irq2 = 7;
        vector = s.irqBase + irq2;
      } else {
        vector = m.irqBase + irq;
      }
      m.intack(irq);
    } else {
      vector = m.irqBase + 7;
    }
    this.update();
    return vector;
  }

  chips(): { master: PicChipView; slave: PicChipView } {
    const view = (c: PicChip): PicChipView => ({
      irr: c.irr,
      imr: c.imr,
      isr: c.isr,
      elcr: c.elcr,
      vectorBase: c.irqBase,
      initialised: c.initialised,
    });
    return { master: view(this.master), slave: view(this.slave) };
  }

  ioRead(port: number, size: AccessSize): number {
    return readBytewise(port, size, (p) => this.readByte(p));
  }

  ioWrite(port: number, size: AccessSize, value: number): void {
    writeBytewise(port, size, value, (p, b) => this.writeByte(p, b));
  }

  private chipFor(port: number): PicChip | undefined {
    if (port === 0x20 || port === 0x21) return this.master;
    if (port === 0xa0 || port === 0xa1) return this.slave;
    return undefined;
  }

  private readByte(port: number): number {
    if (port === 0x4d0) return this.master.elcr;
    if (port === 0x4d1) return this.slave.elcr;
    const c = this.chipFor(port);
    if (!c) return 0xff;
    let ret: number;
    if (c.poll) {
      // Poll mode: the read itself acknowledges the highest request.
      const irq = c.pendingIrq();
      if (irq >= 0) {
        c.intack(irq);
        ret = irq | 0x80;
      } else {
        ret = 0;
      }
      c.poll = false;
      this.update();
    } else if ((port & 1) === 0) {
      ret = c.readRegSelect ? c.isr : c.irr;
    } else {
      ret = c.imr;
    }
    return ret;
  }

  private writeByte(port: number, val: number): void {
    if (port === 0x4d0 || port === 0x4d1) {
      const c = port === 0x4d0 ? this.master : this.slave;
      c.elcr = val & c.elcrMask;
      return;
    }
    const c = this.chipFor(port);
    if (!c) return;
    if ((port & 1) === 0) c.writeCommand(val);
    else c.writeData(val);
    this.update();
  }

  /** Propagate slave output to master IR2, then recompute INTR. */
  private update(): void {
    this.master.setInput(2, this.slave.output());
    const now = this.master.output();
    if (now !== this.intr) {
      this.intr = now;
      this.onIntrChange?.(now);
    }
  }

  saveState(): StateRecord {
    return { version: STATE_VERSION, chips: [this.master.save(), this.slave.save()] };
  }

  restoreState(state: StateRecord): void {
    checkVersion(state, STATE_VERSION, this.snapshotId);
    const [m, s] = stateRecordList(state, 'chips', this.snapshotId, 2);
    // Parse into fresh chips so a bad record leaves the device untouched.
    const master = new PicChip(true, 0xf8);
    const slave = new PicChip(false, 0xde);
    master.restore(m!, `${this.snapshotId}.master`);
    slave.restore(s!, `${this.snapshotId}.slave`);
    this.master = master;
    this.slave = slave;
    // INTR is a function of the restored registers; do not re-notify from here.
    this.intr = this.master.output();
  }
}
