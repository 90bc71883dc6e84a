/**
 * MC146818 RTC + 128-byte CMOS at ports 0x70 (index, bit 7 = NMI disable)
 * and 0x71 (data). Time registers are computed from a fixed base epoch plus
 * virtual time (never host time), so runs are deterministic. Register
 * semantics follow QEMU's mc146818rtc.c; the configuration bytes follow
 * QEMU's pc_cmos_init() layout.
 */
import type { AccessSize, IrqLine, PortIoDevice, PortRange, TimerHandle, VirtualClock } from './device.js';
import { checkVersion, stateBoolean, stateBytes, type StateRecord } from '../state.js';
import { fromBcd, mulDivFloor, readBytewise, stateInt, stateIntOrNull, toBcd, writeBytewise } from './dev-util.js';

const SECONDS = 0x00;
const SECONDS_ALARM = 0x01;
const MINUTES = 0x02;
const MINUTES_ALARM = 0x03;
const HOURS = 0x04;
const HOURS_ALARM = 0x05;
const DAY_OF_WEEK = 0x06;
const DAY_OF_MONTH = 0x07;
const MONTH = 0x08;
const YEAR = 0x09;
const REG_A = 0x0a;
const REG_B = 0x0b;
const REG_C = 0x0c;
const REG_D = 0x0d;
const CENTURY = 0x32;
const IBM_PS2_CENTURY = 0x37;
const TIME_REGS = new Set([SECONDS, MINUTES, HOURS, DAY_OF_WEEK, DAY_OF_MONTH, MONTH, YEAR, CENTURY]);

const A_UIP = 0x80;
const B_SET = 0x80;
const B_PIE = 0x40;
const B_AIE = 0x20;
const B_UIE = 0x10;
const B_DM = 0x04; // binary (not BCD) mode
const B_24H = 0x02;
const C_IRQF = 0x80;
const C_PF = 0x40;
const C_AF = 0x20;
const C_UF = 0x10;
const C_MASK = 0x70;

const NS_PER_S = 1_000_000_000;
const RTC_HZ = 32768;
/** UIP is reported during the last 244 us before each update, like QEMU (8 cycles of 32 kHz). */
const UIP_HOLD_NS = Math.floor((8 * NS_PER_S) / RTC_HZ);
const SEC_PER_DAY = 86400;
const KiB = 1024;
const MiB = 1024 * KiB;

/** Checksummed range and checksum location (high byte first), the IBM AT convention. */
export const CMOS_CHECKSUM_FIRST = 0x10;
export const CMOS_CHECKSUM_LAST = 0x2d;
export const CMOS_CHECKSUM_HI = 0x2e;
export const CMOS_CHECKSUM_LO = 0x2f;

/** 2026-01-01T00:00:00Z: the default RTC time at virtual time 0. */
export const DEFAULT_RTC_EPOCH_SECONDS = Date.UTC(2026, 0, 1) / 1000;

/**
 * RAM below 4 GiB on a PC with `memoryBytes` of RAM, using QEMU's i440FX rule:
 * everything fits below the PCI hole up to 3.5 GiB, otherwise 3 GiB stays low.
 */
export function pcLowMemoryBytes(memoryBytes: number): number {
  return memoryBytes >= 0xe0000000 ? 0xc0000000 : memoryBytes;
}

export interface CmosRtcOptions {
  clock: VirtualClock;
  /** ISA IRQ8. */
  irq: IrqLine;
  memoryBytes: number;
  cpus: number;
  /** RAM mapped below 4 GiB; defaults to pcLowMemoryBytes(memoryBytes). The rest sits above 4 GiB. */
  lowMemoryBytes?: number;
  /** RTC time (Unix seconds, UTC) at construction. Default 2026-01-01T00:00:00Z. */
  epochSeconds?: number;
  /** Fault injection: the stored checksum does not match the configuration bytes. */
  badChecksum?: boolean;
}

const STATE_VERSION = 1;

export class CmosRtc implements PortIoDevice {
  readonly name = 'cmos-rtc';
  readonly snapshotId = 'cmos';
  readonly stateVersion = STATE_VERSION;
  readonly ports: readonly PortRange[] = [{ base: 0x70, length: 2 }];

  private readonly clock: VirtualClock;
  private readonly irq: IrqLine;
  private data = new Uint8Array(128);
  private index = 0;
  private nmiDisabledFlag = false;
  /** Guest RTC time = baseSec + (now - lastUpdateNs + offsetNs) / 1e9, as in QEMU. */
  private baseSec: number;
  private lastUpdateNs: number;
  private offsetNs = 0;
  /** RTC second up to which update-ended/alarm flags have been evaluated. */
  private flagsSec: number;
  private irqLevel = false;
  /** Next periodic interrupt, in 32.768 kHz cycles since virtual time 0. */
  private nextPeriodicClock: number | null = null;
  private periodicTimer: TimerHandle | null = null;
  private updateDeadline: number | null = null;
  private updateTimer: TimerHandle | null = null;

  constructor(opts: CmosRtcOptions) {
    this.clock = opts.clock;
    this.irq = opts.irq;
    if (!Number.isSafeInteger(opts.memoryBytes) || opts.memoryBytes < 0) throw new RangeError(`cmos: bad memoryBytes ${opts.memoryBytes}`);
    if (!Number.isInteger(opts.cpus) || opts.cpus < 1 || opts.cpus > 256) throw new RangeError(`cmos: bad cpu count ${opts.cpus}`);
    const low = opts.lowMemoryBytes ?? pcLowMemoryBytes(opts.memoryBytes);
    if (low > opts.memoryBytes || low > 0x100000000) throw new RangeError(`cmos: lowMemoryBytes ${low} exceeds RAM or 4 GiB`);
    const high = opts.memoryBytes - low;

    this.baseSec = opts.epochSeconds ?? DEFAULT_RTC_EPOCH_SECONDS;
    if (!Number.isSafeInteger(this.baseSec)) throw new RangeError(`cmos: bad epochSeconds ${opts.epochSeconds}`);
    this.lastUpdateNs = this.clock.nowNs();
    this.flagsSec = this.baseSec;

    const d = this.data;
    d[REG_A] = 0x26; // 32.768 kHz divider, 1024 Hz periodic rate
    d[REG_B] = B_24H; // BCD, 24-hour
    d[REG_C] = 0;
    d[REG_D] = 0x80; // valid RAM and time
    this.render(this.baseSec);

    d[0x10] = 0x00; // no floppy drives
    d[0x14] = 0x06; // equipment: FPU present, PS/2 mouse (QEMU's value without floppies)
    const base = Math.min(Math.floor(low / KiB), 640);
    d[0x15] = base & 0xff;
    d[0x16] = base >> 8;
    const ext = low > MiB ? Math.min(Math.floor((low - MiB) / KiB), 0xffff) : 0;
    d[0x17] = d[0x30] = ext & 0xff;
    d[0x18] = d[0x31] = ext >> 8;
    const above16 = low > 16 * MiB ? Math.min(Math.floor((low - 16 * MiB) / (64 * KiB)), 0xffff) : 0;
    d[0x34] = above16 & 0xff;
    d[0x35] = above16 >> 8;
    const above4g = Math.min(Math.floor(high / (64 * KiB)), 0xffffff);
    d[0x5b] = above4g & 0xff;
    d[0x5c] = (above4g >> 8) & 0xff;
    d[0x5d] = (above4g >> 16) & 0xff;
    d[0x5f] = opts.cpus - 1;

    let sum = this.computeChecksum();
    if (opts.badChecksum) sum = ~sum & 0xffff;
    d[CMOS_CHECKSUM_HI] = sum >> 8;
    d[CMOS_CHECKSUM_LO] = sum & 0xff;
  }

  // ---- inspection ----

  /** A copy of all 128 bytes, time registers brought up to date. */
  bytes(): Uint8Array {
    if (this.running()) this.updateTime(this.clock.nowNs());
    return this.data.slice();
  }

  checksumValid(): boolean {
    return ((this.data[CMOS_CHECKSUM_HI]! << 8) | this.data[CMOS_CHECKSUM_LO]!) === this.computeChecksum();
  }

  /** Port 0x70 bit 7 as last written: NMI masked at the chipset. */
  nmiDisabled(): boolean {
    return this.nmiDisabledFlag;
  }

  /** Current RTC time as Unix seconds (what the guest would read, before any SET-mode freeze). */
  timeSeconds(): number {
    return this.guestTime(this.clock.nowNs()).sec;
  }

  private computeChecksum(): number {
    let sum = 0;
    for (let i = CMOS_CHECKSUM_FIRST; i <= CMOS_CHECKSUM_LAST; i++) sum += this.data[i]!;
    return sum & 0xffff;
  }

  // ---- clock model ----

  private running(): boolean {
    return !(this.data[REG_B]! & B_SET) && (this.data[REG_A]! & 0x70) <= 0x20;
  }

  private guestTime(now: number): { sec: number; frac: number } {
    const elapsed = now - this.lastUpdateNs + this.offsetNs;
    const whole = Math.floor(elapsed / NS_PER_S);
    return { sec: this.baseSec + whole, frac: elapsed - whole * NS_PER_S };
  }

  private enc(v: number): number {
    return this.data[REG_B]! & B_DM ? v : toBcd(v);
  }

  private dec(v: number): number {
    return this.data[REG_B]! & B_DM ? v : fromBcd(v);
  }

  private encHour(h: number): number {
    if (this.data[REG_B]! & B_24H) return this.enc(h);
    const h12 = h % 12 === 0 ? 12 : h % 12;
    return this.enc(h12) | (h >= 12 ? 0x80 : 0);
  }

  /** Write the time registers for Unix second `sec`. */
  private render(sec: number): void {
    const t = new Date(sec * 1000);
    const d = this.data;
    d[SECONDS] = this.enc(t.getUTCSeconds());
    d[MINUTES] = this.enc(t.getUTCMinutes());
    d[HOURS] = this.encHour(t.getUTCHours());
    d[DAY_OF_WEEK] = this.enc(t.getUTCDay() + 1);
    d[DAY_OF_MONTH] = this.enc(t.getUTCDate());
    d[MONTH] = this.enc(t.getUTCMonth() + 1);
    const year = t.getUTCFullYear();
    d[YEAR] = this.enc(year % 100);
    d[CENTURY] = this.enc(Math.floor(year / 100));
  }

  /** Read the time registers back into Unix seconds (what the guest set). */
  private parse(): number {
    const d = this.data;
    let hour = this.dec(d[HOURS]! & 0x7f);
    if (!(d[REG_B]! & B_24H)) {
      hour %= 12;
      if (d[HOURS]! & 0x80) hour += 12;
    }
    const year = this.dec(d[YEAR]!) + this.dec(d[CENTURY]!) * 100;
    return Math.floor(Date.UTC(year, this.dec(d[MONTH]!) - 1, this.dec(d[DAY_OF_MONTH]!), hour, this.dec(d[MINUTES]!), this.dec(d[SECONDS]!)) / 1000);
  }

  /** rtc_update_time: refresh the registers unless the guest holds SET. */
  private updateTime(now: number): void {
    if (!(this.data[REG_B]! & B_SET)) this.render(this.guestTime(now).sec);
  }

  /** rtc_set_time: the registers become the new time base. */
  private setTime(now: number): void {
    this.baseSec = this.parse();
    this.lastUpdateNs = now;
    this.flagsSec = this.guestTime(now).sec;
  }

  private uip(now: number): boolean {
    return this.running() && this.guestTime(now).frac >= NS_PER_S - UIP_HOLD_NS;
  }

  // ---- interrupt flags ----

  private setIrq(level: boolean): void {
    if (level !== this.irqLevel) {
      this.irqLevel = level;
      this.irq.setLevel(level);
    }
  }

  private raiseFlags(flags: number): void {
    const fresh = flags & ~this.data[REG_C]!;
    this.data[REG_C]! |= flags;
    if (fresh & this.data[REG_B]! & C_MASK) {
      this.data[REG_C]! |= C_IRQF;
      this.setIrq(true);
    }
  }

  /** Evaluate update-ended and alarm flags for every second boundary crossed since the last check. */
  private syncFlags(now: number): void {
    if (!this.running()) return;
    const cur = this.guestTime(now).sec;
    if (cur <= this.flagsSec) return;
    let flags = C_UF;
    if (this.alarmHitIn(this.flagsSec, cur)) flags |= C_AF;
    this.flagsSec = cur;
    this.raiseFlags(flags);
  }

  private alarmHitIn(fromSec: number, toSec: number): boolean {
    const d = this.data;
    const as = d[SECONDS_ALARM]!;
    const am = d[MINUTES_ALARM]!;
    const ah = d[HOURS_ALARM]!;
    const dontCare = (v: number) => (v & 0xc0) === 0xc0;
    const start = Math.max(fromSec + 1, toSec - SEC_PER_DAY + 1);
    for (let s = start; s <= toSec; s++) {
      const tod = ((s % SEC_PER_DAY) + SEC_PER_DAY) % SEC_PER_DAY;
      if (!dontCare(as) && this.enc(tod % 60) !== as) continue;
      if (!dontCare(am) && this.enc(Math.floor(tod / 60) % 60) !== am) continue;
      if (!dontCare(ah) && this.encHour(Math.floor(tod / 3600)) !== ah) continue;
      return true;
    }
    return false;
  }

  /** Tick once per second while an update or alarm interrupt is enabled. */
  private armUpdateTimer(): void {
    if (this.updateTimer) this.clock.cancel(this.updateTimer);
    this.updateTimer = null;
    this.updateDeadline = null;
    if (!this.running() || !(this.data[REG_B]! & (B_UIE | B_AIE))) return;
    const now = this.clock.nowNs();
    this.scheduleUpdate(now + (NS_PER_S - this.guestTime(now).frac));
  }

  private scheduleUpdate(deadline: number): void {
    this.updateDeadline = deadline;
    this.updateTimer = this.clock.schedule(deadline, () => {
      this.updateTimer = null;
      this.updateDeadline = null;
      this.syncFlags(this.clock.nowNs());
      this.armUpdateTimer();
    });
  }

  private periodCycles(): number {
    if (!(this.data[REG_B]! & B_PIE)) return 0;
    let code = this.data[REG_A]! & 0x0f;
    if (code === 0) return 0;
    if (code <= 2) code += 7;
    return 1 << (code - 1);
  }

  /** QEMU's periodic_timer_update: on a rate change the next tick counts from the previous one. */
  private updatePeriodic(oldPeriod: number): void {
    if (this.periodicTimer) this.clock.cancel(this.periodicTimer);
    this.periodicTimer = null;
    const period = this.periodCycles();
    if (!period) {
      this.nextPeriodicClock = null;
      return;
    }
    const cur = mulDivFloor(this.clock.nowNs(), RTC_HZ, NS_PER_S);
    let lost = 0;
    if (oldPeriod && this.nextPeriodicClock !== null) lost = Math.max(0, cur - (this.nextPeriodicClock - oldPeriod));
    lost = Math.min(lost, period);
    this.schedulePeriodic(cur + period - lost);
  }

  private schedulePeriodic(clock32k: number): void {
    this.nextPeriodicClock = clock32k;
    const deadline = mulDivFloor(clock32k, NS_PER_S, RTC_HZ) + 1;
    this.periodicTimer = this.clock.schedule(deadline, () => {
      this.periodicTimer = null;
      const period = this.periodCycles();
      this.raiseFlags(C_PF);
      if (period) this.schedulePeriodic(clock32k + period);
      else this.nextPeriodicClock = null;
    });
  }

  // ---- port access ----

  ioRead(port: number, size: AccessSize): number {
    return readBytewise(port, size, (p) => (p === 0x70 ? 0xff : this.readData()));
  }

  ioWrite(port: number, size: AccessSize, value: number): void {
    writeBytewise(port, size, value, (p, b) => {
      if (p === 0x70) {
        this.index = b & 0x7f;
        this.nmiDisabledFlag = (b & 0x80) !== 0;
      } else {
        this.writeData(b);
      }
    });
  }

  private readData(): number {
    const now = this.clock.nowNs();
    if (this.index === IBM_PS2_CENTURY) this.index = CENTURY;
    const idx = this.index;
    if (TIME_REGS.has(idx)) {
      if (this.running()) this.updateTime(now);
      return this.data[idx]!;
    }
    switch (idx) {
      case REG_A:
        return this.data[REG_A]! | (this.uip(now) ? A_UIP : 0);
      case REG_C: {
        this.syncFlags(now);
        const ret = this.data[REG_C]!;
        this.data[REG_C] = 0;
        this.setIrq(false);
        return ret;
      }
      default:
        return this.data[idx]!;
    }
  }

  private writeData(val: number): void {
    const now = this.clock.nowNs();
    if (this.index === IBM_PS2_CENTURY) this.index = CENTURY;
    const idx = this.index;
    const d = this.data;
    if (TIME_REGS.has(idx)) {
      if (this.running()) {
        // Bring the other fields up to date first so writing one field does not rewind the rest.
        this.syncFlags(now);
        this.updateTime(now);
        d[idx] = val;
        this.setTime(now);
        this.armUpdateTimer();
      } else {
        d[idx] = val;
      }
      return;
    }
    switch (idx) {
      case SECONDS_ALARM:
      case MINUTES_ALARM:
      case HOURS_ALARM:
        this.syncFlags(now);
        d[idx] = val;
        break;
      case REG_A: {
        this.syncFlags(now);
        const rateChanged = ((d[REG_A]! ^ val) & 0x0f) !== 0;
        const oldPeriod = this.periodCycles();
        if ((val & 0x60) === 0x60) {
          // Divider chain held in reset: the time stops where it is.
          if (this.running()) this.updateTime(now);
        } else if ((d[REG_A]! & 0x60) === 0x60 && (val & 0x70) <= 0x20) {
          // Leaving divider reset: the first update comes half a second later.
          if (!(d[REG_B]! & B_SET)) {
            this.offsetNs = 500_000_000;
            this.setTime(now);
          }
        }
        d[REG_A] = val & ~A_UIP;
        if (rateChanged) this.updatePeriodic(oldPeriod);
        this.armUpdateTimer();
        break;
      }
      case REG_B: {
        this.syncFlags(now);
        const pieChanged = ((d[REG_B]! ^ val) & B_PIE) !== 0;
        const oldPeriod = this.periodCycles();
        if (val & B_SET) {
          if (this.running()) this.updateTime(now);
          val &= ~B_UIE; // setting SET clears UIE
        } else if (d[REG_B]! & B_SET && (d[REG_A]! & 0x70) <= 0x20) {
          // Leaving SET mode: keep the sub-second phase, take the written time.
          this.offsetNs = this.guestTime(now).frac;
          this.setTime(now);
        }
        // An already-set flag raises the interrupt as soon as it is enabled.
        if (val & d[REG_C]! & C_MASK) {
          d[REG_C]! |= C_IRQF;
          this.setIrq(true);
        } else {
          d[REG_C]! &= ~C_IRQF;
          this.setIrq(false);
        }
        d[REG_B] = val;
        if (pieChanged) this.updatePeriodic(oldPeriod);
        this.armUpdateTimer();
        break;
      }
      case REG_C:
      case REG_D:
        break; // read-only
      default:
        d[idx] = val;
        break;
    }
  }

  // ---- snapshot ----

  saveState(): StateRecord {
    return {
      version: STATE_VERSION,
      data: this.data.slice(),
      index: this.index,
      nmiDisabled: this.nmiDisabledFlag,
      baseSec: this.baseSec,
      lastUpdateNs: this.lastUpdateNs,
      offsetNs: this.offsetNs,
      flagsSec: this.flagsSec,
      irqLevel: this.irqLevel,
      nextPeriodicClock: this.nextPeriodicClock,
      updateDeadline: this.updateDeadline,
    };
  }

  restoreState(state: StateRecord): void {
    const id = this.snapshotId;
    checkVersion(state, STATE_VERSION, id);
    const data = stateBytes(state, 'data', id, 128);
    const index = stateInt(state, 'index', id, 0, 0x7f);
    const nmiDisabled = stateBoolean(state, 'nmiDisabled', id);
    const baseSec = stateInt(state, 'baseSec', id, -Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER);
    const lastUpdateNs = stateInt(state, 'lastUpdateNs', id, 0, Number.MAX_SAFE_INTEGER);
    const offsetNs = stateInt(state, 'offsetNs', id, 0, NS_PER_S - 1);
    const flagsSec = stateInt(state, 'flagsSec', id, -Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER);
    const irqLevel = stateBoolean(state, 'irqLevel', id);
    const nextPeriodicClock = stateIntOrNull(state, 'nextPeriodicClock', id, 0, Number.MAX_SAFE_INTEGER);
    const updateDeadline = stateIntOrNull(state, 'updateDeadline', id, 0, Number.MAX_SAFE_INTEGER);

    if (this.periodicTimer) this.clock.cancel(this.periodicTimer);
    if (this.updateTimer) this.clock.cancel(this.updateTimer);
    this.periodicTimer = this.updateTimer = null;
    this.data = data.slice();
    this.index = index;
    this.nmiDisabledFlag = nmiDisabled;
    this.baseSec = baseSec;
    this.lastUpdateNs = lastUpdateNs;
    this.offsetNs = offsetNs;
    this.flagsSec = flagsSec;
    this.irqLevel = irqLevel;
    this.nextPeriodicClock = null;
    this.updateDeadline = null;
    if (nextPeriodicClock !== null) this.schedulePeriodic(nextPeriodicClock);
    if (updateDeadline !== null) this.scheduleUpdate(updateDeadline);
  }
}
