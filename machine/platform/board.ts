/**
 * The PC board: the legacy device set at its ISA addresses, one local APIC per
 * CPU, and the interrupt routing between them. The bare machine and every VM
 * are built by this one builder, so both acknowledge interrupts the same way
 * (LAPIC first, then ExtINT from the 8259A through LINT0, as QEMU's
 * cpu_get_pic_interrupt does) and save the same device records.
 */
import { IoBus } from '../devices/io-bus.js';
import { Pic8259 } from '../devices/pic8259.js';
import { Pit8254 } from '../devices/pit8254.js';
import { Uart16550 } from '../devices/uart16550.js';
import { CmosRtc } from '../devices/cmos-rtc.js';
import { DebugExit } from '../devices/debug-exit.js';
import { Debugcon } from '../devices/debugcon.js';
import { LocalApic, deliverIpi, type IpiMessage } from '../devices/lapic.js';
import { IoApic } from '../devices/ioapic.js';
import { routeIoApicMessage } from './ioapic-routing.js';
import type { IrqLine, PortIoDevice, VirtualClock } from '../devices/device.js';
import { StateError, type StateRecord } from '../state.js';

export interface BoardCpuControl {
  /** INIT: the CPU resets and waits for a SIPI. */
  onInit(cpu: number): void;
  /** SIPI: the CPU starts in real mode at vector << 12. */
  onStartup(cpu: number, vector: number): void;
  /** NMI through the LAPIC (LINT1 programmed as NMI, or an NMI IPI). */
  onNmi?(cpu: number): void;
}

export interface BoardConfig {
  clock: VirtualClock;
  cpus: number;
  memoryBytes: number;
  /** RAM below the PCI hole (CMOS 0x30/0x34 report it). */
  lowMemoryBytes: number;
  /** Something needs a CPU's attention (an interrupt line rose, an IPI was sent). */
  kick: () => void;
  control: BoardCpuControl;
  onSerialByte: (byte: number) => void;
  /** A second 16550 at 0x2F8 (IRQ 3), as on a PC with two serial ports: VMs have one. */
  onCom2Byte?: (byte: number) => void;
  /** isa-debug-exit: `status` is what QEMU would pass to exit(). */
  onDebugExit: (status: number, value: number) => void;
  onDebugconByte?: (byte: number) => void;
  faults?: { pitStuck?: boolean; uartDead?: boolean; cmosBadChecksum?: boolean };
  /** RTC time (Unix seconds, UTC) at the board's virtual time 0; default the CMOS model's fixed epoch. */
  rtcEpochSeconds?: number;
  /** An I/O APIC beside the 8259s (VMs, whose ACPI MADT lists it): ISA IRQ n to pin n, IRQ 0 to pin 2. */
  ioapic?: boolean;
}

export class PcBoard {
  readonly io = new IoBus();
  readonly pic: Pic8259;
  readonly pit: Pit8254;
  readonly uart: Uart16550;
  readonly com2: Uart16550 | null = null;
  readonly cmos: CmosRtc;
  readonly debugExit: DebugExit;
  readonly debugcon: Debugcon;
  readonly lapics: LocalApic[] = [];
  readonly ioapic: IoApic | null = null;
  /** Devices added after records existed: a record without them restores them at reset. */
  private readonly optionalInRecords = new Set<PortIoDevice>();

  constructor(config: BoardConfig) {
    const { clock, kick } = config;
    const faults = config.faults ?? {};
    this.pic = new Pic8259({ onIntrChange: (level) => level && kick() });
    if (config.ioapic) this.ioapic = new IoApic({ deliver: (msg) => { routeIoApicMessage(this.lapics, msg); kick(); } });
    const ioapic = this.ioapic;
    const irq = (n: number): IrqLine => (ioapic ? bothControllers(this.pic.irqLine(n), ioapic.line(n === 0 ? 2 : n)) : this.pic.irqLine(n));
    this.pit = new Pit8254({ clock, irq0: irq(0), stuck: faults.pitStuck ?? false });
    this.uart = new Uart16550({ clock, irq: irq(4), base: 0x3f8, dead: faults.uartDead ?? false, onTransmit: config.onSerialByte });
    this.cmos = new CmosRtc({ clock, irq: irq(8), memoryBytes: config.memoryBytes, lowMemoryBytes: config.lowMemoryBytes, cpus: config.cpus, badChecksum: faults.cmosBadChecksum ?? false, ...(config.rtcEpochSeconds !== undefined ? { epochSeconds: config.rtcEpochSeconds } : {}) });
    this.debugExit = new DebugExit({ onExit: config.onDebugExit });
    this.debugcon = new Debugcon(config.onDebugconByte ? { onByte: config.onDebugconByte } : {});
    for (const d of [this.pic, this.pit, this.uart, this.cmos, this.debugExit, this.debugcon]) this.io.register(d);
    if (config.onCom2Byte) {
      this.com2 = new Uart16550({ clock, irq: irq(3), base: 0x2f8, onTransmit: config.onCom2Byte });
      this.io.register(this.com2);
    }
    for (let i = 0; i < config.cpus; i++) {
      const index = i;
      this.lapics.push(
        new LocalApic({
          clock,
          apicId: i,
          bsp: i === 0,
          onIpi: (msg) => this.routeIpi(msg, kick),
          ...(ioapic ? { onLevelEoi: (vector: number) => ioapic.eoi(vector) } : {}),
          cpu: {
            onInterruptChange: (pending) => pending && kick(),
            onInit: () => config.control.onInit(index),
            onStartup: (vector) => config.control.onStartup(index, vector),
            onNmi: () => {
              config.control.onNmi?.(index);
              kick();
            },
          },
        }),
      );
    }
  }

  /** Board-specific extras (POST port, fw_cfg) on the same I/O bus. */
  addDevice(device: PortIoDevice, opts: { optionalInRecords?: boolean } = {}): void {
    this.io.register(device);
    if (opts.optionalInRecords) this.optionalInRecords.add(device);
  }

  /** The APIC bus: every local APIC that accepts the message gets it. */
  private routeIpi(msg: IpiMessage, kick: () => void): void {
    deliverIpi(this.lapics, msg);
    kick();
  }

  interruptPending(cpu: number): boolean {
    const lapic = this.lapics[cpu]!;
    if (lapic.hasInterrupt()) return true;
    return lapic.extIntEnabled() && this.pic.hasInterrupt();
  }

  /** INTA: the LAPIC's highest pending vector, else the PIC's through LINT0 (ExtINT); null if it went away. */
  acknowledgeInterrupt(cpu: number): number | null {
    const lapic = this.lapics[cpu]!;
    if (lapic.hasInterrupt()) return lapic.acknowledge();
    if (lapic.extIntEnabled() && this.pic.hasInterrupt()) return this.pic.acknowledge();
    return null;
  }

  /** Device and LAPIC records, keyed by the devices' snapshot ids. */
  saveState(): StateRecord {
    return {
      devices: { ...Object.fromEntries(this.io.devices().map((d) => [d.snapshotId, d.saveState()])), ...(this.ioapic ? { [this.ioapic.snapshotId]: this.ioapic.saveState() } : {}) },
      lapics: this.lapics.map((l) => l.saveState()),
    };
  }

  /** Restores after the clock has been set (devices re-arm their timers against it). */
  restoreState(devices: StateRecord, lapics: unknown, who: string): void {
    if (!Array.isArray(lapics) || lapics.length !== this.lapics.length) throw new StateError(who, 'lapics', `expected ${this.lapics.length} LAPIC records`);
    for (const d of this.io.devices()) {
      const rec = devices[d.snapshotId];
      // Records from before VMs had COM2 leave it at reset.
      if (rec === undefined && (d === this.com2 || this.optionalInRecords.has(d))) continue;
      if (rec === null || typeof rec !== 'object' || Array.isArray(rec) || rec instanceof Uint8Array) throw new StateError(who, `devices.${d.snapshotId}`, 'missing or not a record');
      d.restoreState(rec);
    }
    this.lapics.forEach((l, i) => l.restoreState(lapics[i] as StateRecord));
    if (this.ioapic) {
      // Records from before VMs had an I/O APIC leave it at reset (all pins masked).
      const rec = devices[this.ioapic.snapshotId];
      if (rec === undefined) this.ioapic.reset();
      else if (rec === null || typeof rec !== 'object' || Array.isArray(rec) || rec instanceof Uint8Array) throw new StateError(who, `devices.${this.ioapic.snapshotId}`, 'not a record');
      else this.ioapic.restoreState(rec);
    }
  }
}

/** An ISA IRQ wired to both the 8259 and the I/O APIC, as on a PC with both. */
function bothControllers(a: IrqLine, b: IrqLine): IrqLine {
  return {
    setLevel: (high) => {
      a.setLevel(high);
      b.setLevel(high);
    },
    pulse: () => {
      a.pulse();
      b.pulse();
    },
  };
}
