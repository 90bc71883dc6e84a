/**
 * 8254 programmable interval timer (ports 0x40-0x43) plus the PC's port 0x61
 * (channel 2 gate, speaker enable, OUT2 and refresh-toggle status).
 *
 * Counters are not ticked: the value is computed from VirtualClock time since
 * the counter was loaded. Only channel 0's OUT (IRQ0) needs timer events; the
 * next OUT transition is scheduled and re-armed when it fires.
 */
import type { AccessSize, IrqLine, PortIoDevice, PortRange, TimerHandle, VirtualClock } from './device.js';
import { checkVersion, stateBoolean, type StateRecord } from '../state.js';
import { fromBcd, mulDivCeil, mulDivFloor, readBytewise, stateInt, stateIntOrNull, stateRecordList, toBcd, writeBytewise } from './dev-util.js';

/** PIT input clock in Hz (14.31818 MHz / 12). */
export const PIT_HZ = 1_193_182;
const NS_PER_S = 1_000_000_000;
/** DRAM refresh: channel 1 in mode 2 with count 18 toggles port 0x61 bit 4 every 18 PIT clocks (~15 us). */
const REFRESH_TICKS = 18;

// Access modes (control word bits 5:4); also used as read/write flip-flop states.
const RW_LATCH = 0;
const RW_LSB = 1;
const RW_MSB = 2;
const RW_WORD0 = 3; // lo/hi, expecting low byte
const RW_WORD1 = 4; // lo/hi, expecting high byte

const MAX_NS = Number.MAX_SAFE_INTEGER;

class PitChannel {
  /** Control-word mode bits 3:1 as written (6/7 alias 2/3). */
  modeBits = 3;
  rwMode = RW_LATCH;
  bcd = false;
  /** Reload value: 1..65536 (binary) or 1..10000 (BCD). */
  reload = 0x10000;
  /** A count has been written since the last control word; counting only then. */
  armed = true;
  /** Counter value shown while not armed (after a control word, before the count). */
  heldCount = 0;
  /** Counting elapsed before startNs (gate pauses) and the time counting (re)started. */
  baseTicks = 0;
  startNs = 0;
  running = true;
  gate = true;
  readState = RW_LSB;
  writeState = RW_LSB;
  writeLatch = 0;
  latchedCount = 0;
  /** 0 when no count is latched, otherwise the read state for the latched bytes. */
  countLatched = 0;
  status = 0;
  statusLatched = false;
  nullCount = false;

  get mode(): number {
    return this.modeBits >= 6 ? this.modeBits - 4 : this.modeBits;
  }
}

export interface Pit8254Options {
  clock: VirtualClock;
  /** Channel 0 OUT, wired to ISA IRQ0. */
  irq0: IrqLine;
  /** Fault injection: counters never move from their reload value and IRQ0 never fires. */
  stuck?: boolean;
}

export interface PitChannelView {
  readonly mode: number;
  readonly reload: number;
  readonly count: number;
  readonly out: boolean;
  readonly gate: boolean;
  readonly bcd: boolean;
}

const STATE_VERSION = 1;

export class Pit8254 implements PortIoDevice {
  readonly name = 'pit8254';
  readonly snapshotId = 'pit';
  readonly stateVersion = STATE_VERSION;
  readonly ports: readonly PortRange[] = [
    { base: 0x40, length: 4 },
    { base: 0x61, length: 1 },
  ];

  private readonly clock: VirtualClock;
  private readonly irq0: IrqLine;
  private readonly stuck: boolean;
  private readonly ch: PitChannel[] = [new PitChannel(), new PitChannel(), new PitChannel()];
  /** Port 0x61 bits 1..3 as last written (bit 1 = speaker data enable). */
  private port61 = 0;
  private out0 = false;
  /** Channel 0 tick (counted from its start) of the next scheduled OUT transition. */
  private nextTick: number | null = null;
  private timer: TimerHandle | null = null;

  constructor(opts: Pit8254Options) {
    this.clock = opts.clock;
    this.irq0 = opts.irq0;
    this.stuck = opts.stuck ?? false;
    // Power-on state as QEMU models it: every channel in mode 3 with count 65536,
    // gates 0/1 tied high, gate 2 low (port 0x61 bit 0 clear). Channel 0 therefore
    // already produces ~18.2 Hz edges before the firmware programs it.
    const now = this.clock.nowNs();
    this.ch.forEach((c, i) => {
      c.startNs = now;
      c.gate = i !== 2;
      c.running = c.gate;
    });
    this.rearm();
  }

  // ---- time base ----

  private ticks(c: PitChannel, now: number): number {
    if (this.stuck) return 0;
    if (!c.armed) return 0;
    return c.baseTicks + (c.running ? mulDivFloor(Math.max(0, now - c.startNs), PIT_HZ, NS_PER_S) : 0);
  }

  /** Virtual time at which channel `c` reaches `tick` (only meaningful while running). */
  private tickTime(c: PitChannel, tick: number): number {
    const ns = c.startNs + mulDivCeil(tick - c.baseTicks, NS_PER_S, PIT_HZ);
    return Math.min(ns, MAX_NS);
  }

  /** Binary counter value (1..65536 range semantics) for tick count d. */
  private countAt(c: PitChannel, d: number): number {
    if (!c.armed) return c.heldCount;
    const modulus = c.bcd ? 10000 : 0x10000;
    let v: number;
    switch (c.mode) {
      case 2:
        v = c.reload - (d % c.reload);
        break;
      case 3:
        // Mode 3 decrements by two per clock (QEMU's formula; exact for even counts).
        v = c.reload - ((2 * d) % c.reload);
        break;
      default:
        v = (((c.reload - d) % modulus) + modulus) % modulus;
        break;
    }
    return v % modulus;
  }

  private outFor(c: PitChannel, d: number): boolean {
    if (!c.armed) return c.mode !== 0;
    const n = c.reload;
    switch (c.mode) {
      case 0:
      case 1:
        return d >= n;
      case 2:
        if (!c.running && !c.gate) return true;
        return n <= 1 || d % n !== n - 1;
      case 3:
        if (!c.running && !c.gate) return true;
        return n <= 1 || d % n < (n + 1) >> 1;
      default: // 4, 5: one-clock low strobe at terminal count
        return d !== n;
    }
  }

  private outAt(i: number, now: number): boolean {
    const c = this.ch[i]!;
    return this.outFor(c, this.ticks(c, now));
  }

  /** First tick > d at which OUT changes, or null when it never will. */
  private nextTransition(c: PitChannel, d: number): number | null {
    if (!c.armed || !c.running || this.stuck) return null;
    const n = c.reload;
    switch (c.mode) {
      case 0:
      case 1:
        return d < n ? n : null;
      case 2: {
        if (n <= 1) return null;
        const r = d % n;
        return r < n - 1 ? d - r + n - 1 : d - r + n;
      }
      case 3: {
        if (n <= 1) return null;
        const r = d % n;
        const half = (n + 1) >> 1;
        return r < half ? d - r + half : d - r + n;
      }
      default:
        if (d < n) return n;
        if (d === n) return n + 1;
        return null;
    }
  }

  // ---- channel 0 OUT / IRQ0 ----

  private setOut0(level: boolean): void {
    // A stuck timer never moves its OUT pin, so IRQ0 never sees an edge.
    if (this.stuck) return;
    if (level !== this.out0) {
      this.out0 = level;
      this.irq0.setLevel(level);
    }
  }

  private cancelTimer(): void {
    if (this.timer) this.clock.cancel(this.timer);
    this.timer = null;
    this.nextTick = null;
  }

  /** Recompute channel 0 OUT now and schedule its next transition. */
  private rearm(): void {
    this.cancelTimer();
    const c = this.ch[0]!;
    const now = this.clock.nowNs();
    const d = this.ticks(c, now);
    this.setOut0(this.outFor(c, d));
    this.schedule(this.nextTransition(c, d));
  }

  private schedule(tick: number | null): void {
    this.nextTick = tick;
    if (tick === null) return;
    const c = this.ch[0]!;
    this.timer = this.clock.schedule(this.tickTime(c, tick), () => this.fire());
  }

  private fire(): void {
    this.timer = null;
    const tick = this.nextTick;
    if (tick === null) return;
    const c = this.ch[0]!;
    // Use the scheduled tick, not "now": when time jumps several periods at once
    // every intermediate edge is still delivered, in order.
    this.setOut0(this.outFor(c, tick));
    this.schedule(this.nextTransition(c, tick));
  }

  private channelChanged(i: number): void {
    if (i === 0) this.rearm();
  }

  // ---- gate (port 0x61 bit 0 for channel 2) ----

  private setGate(i: number, gate: boolean): void {
    const c = this.ch[i]!;
    if (gate === c.gate) return;
    const now = this.clock.nowNs();
    if (c.armed) {
      switch (c.mode) {
        case 0:
        case 4:
          // Gate low suspends counting; high resumes where it stopped.
          if (!gate) {
            c.baseTicks = this.ticks(c, now);
            c.running = false;
          } else {
            c.startNs = now;
            c.running = true;
          }
          break;
        default:
          // Modes 1, 5 (trigger) and 2, 3 (reload): a rising edge restarts from the reload value.
          if (gate) {
            c.baseTicks = 0;
            c.startNs = now;
            c.running = true;
          } else if (c.mode === 2 || c.mode === 3) {
            c.baseTicks = this.ticks(c, now);
            c.running = false;
          }
          break;
      }
    }
    c.gate = gate;
    this.channelChanged(i);
  }

  // ---- port access ----

  ioRead(port: number, size: AccessSize): number {
    return readBytewise(port, size, (p) => this.readByte(p));
  }

  ioWrite(port: number, size: AccessSize, value: number): void {
    writeBytewise(port, size, value, (p, b) => this.writeByte(p, b));
  }

  private readByte(port: number): number {
    const now = this.clock.nowNs();
    if (port === 0x61) {
      const c2 = this.ch[2]!;
      const refresh = (mulDivFloor(now, PIT_HZ, NS_PER_S * REFRESH_TICKS) & 1) !== 0;
      return (
        (c2.gate ? 0x01 : 0) |
        (this.port61 & 0x0e) |
        (refresh ? 0x10 : 0) |
        (this.outAt(2, now) ? 0x20 : 0)
      );
    }
    if (port === 0x43) return 0; // control word register is write-only; QEMU reads 0
    const c = this.ch[port - 0x40];
    if (!c) return 0xff;
    if (c.statusLatched) {
      c.statusLatched = false;
      return c.status;
    }
    if (c.countLatched) {
      const v = c.latchedCount;
      switch (c.countLatched) {
        case RW_MSB:
          c.countLatched = 0;
          return (v >> 8) & 0xff;
        case RW_WORD0:
          c.countLatched = RW_MSB;
          return v & 0xff;
        default:
          c.countLatched = 0;
          return v & 0xff;
      }
    }
    const v = this.displayCount(c, now);
    switch (c.readState) {
      case RW_MSB:
        return (v >> 8) & 0xff;
      case RW_WORD0:
        c.readState = RW_WORD1;
        return v & 0xff;
      case RW_WORD1:
        c.readState = RW_WORD0;
        return (v >> 8) & 0xff;
      default:
        return v & 0xff;
    }
  }

  /** Counter as the guest reads it: 16-bit binary, or 4 BCD digits. */
  private displayCount(c: PitChannel, now: number): number {
    const v = this.countAt(c, this.ticks(c, now));
    return c.bcd ? (toBcd(Math.floor(v / 100)) << 8) | toBcd(v % 100) : v & 0xffff;
  }

  private latchCount(c: PitChannel, now: number): void {
    if (c.countLatched) return; // a second latch before reading is ignored
    c.latchedCount = this.displayCount(c, now);
    c.countLatched = c.rwMode === RW_LATCH ? RW_LSB : c.rwMode;
  }

  private writeByte(port: number, val: number): void {
    const now = this.clock.nowNs();
    if (port === 0x61) {
      this.port61 = val & 0x0e;
      this.setGate(2, (val & 1) !== 0);
      return;
    }
    if (port === 0x43) {
      const sel = val >> 6;
      if (sel === 3) {
        // Read-back: bit 5 clear = latch count, bit 4 clear = latch status; bits 3..1 select channels.
        for (let i = 0; i < 3; i++) {
          if (!(val & (2 << i))) continue;
          const c = this.ch[i]!;
          if (!(val & 0x20)) this.latchCount(c, now);
          if (!(val & 0x10) && !c.statusLatched) {
            c.status =
              (this.outAt(i, now) ? 0x80 : 0) | (c.nullCount ? 0x40 : 0) | (c.rwMode << 4) | (c.modeBits << 1) | (c.bcd ? 1 : 0);
            c.statusLatched = true;
          }
        }
        return;
      }
      const c = this.ch[sel]!;
      const access = (val >> 4) & 3;
      if (access === RW_LATCH) {
        this.latchCount(c, now);
        return;
      }
      // New control word: counting stops until a count is written; OUT goes to its initial level.
      c.heldCount = this.countAt(c, this.ticks(c, now)) & 0xffff;
      c.rwMode = access;
      c.readState = access;
      c.writeState = access;
      c.modeBits = (val >> 1) & 7;
      c.bcd = (val & 1) !== 0;
      c.armed = false;
      c.nullCount = true;
      c.countLatched = 0;
      c.statusLatched = false;
      this.channelChanged(sel);
      return;
    }
    const i = port - 0x40;
    const c = this.ch[i];
    if (!c) return;
    switch (c.writeState) {
      case RW_MSB:
        this.loadCount(i, val << 8);
        break;
      case RW_WORD0:
        c.writeLatch = val;
        c.writeState = RW_WORD1;
        break;
      case RW_WORD1:
        this.loadCount(i, c.writeLatch | (val << 8));
        c.writeState = RW_WORD0;
        break;
      default:
        this.loadCount(i, val);
        break;
    }
  }

  private loadCount(i: number, raw: number): void {
    const c = this.ch[i]!;
    let n = c.bcd ? fromBcd(raw >> 8) * 100 + fromBcd(raw & 0xff) : raw;
    if (n === 0) n = c.bcd ? 10000 : 0x10000;
    c.reload = n;
    c.armed = true;
    c.nullCount = false;
    c.baseTicks = 0;
    c.startNs = this.clock.nowNs();
    // Modes 1/5 start on load as in QEMU (no separate trigger wait); others need the gate high.
    c.running = c.mode === 1 || c.mode === 5 ? true : c.gate;
    this.channelChanged(i);
  }

  // ---- inspection ----

  channel(i: 0 | 1 | 2): PitChannelView {
    const c = this.ch[i]!;
    const now = this.clock.nowNs();
    return { mode: c.mode, reload: c.reload, count: this.displayCount(c, now), out: this.outAt(i, now), gate: c.gate, bcd: c.bcd };
  }

  /** Speaker is audible when both the gate and the data-enable bit are set; frequency from channel 2. */
  speaker(): { enabled: boolean; frequencyHz: number } {
    const c2 = this.ch[2]!;
    return { enabled: c2.gate && (this.port61 & 0x02) !== 0, frequencyHz: PIT_HZ / c2.reload };
  }

  // ---- snapshot ----

  saveState(): StateRecord {
    return {
      version: STATE_VERSION,
      port61: this.port61,
      out0: this.out0,
      nextTick: this.nextTick,
      channels: this.ch.map((c) => ({
        modeBits: c.modeBits,
        rwMode: c.rwMode,
        bcd: c.bcd,
        reload: c.reload,
        armed: c.armed,
        heldCount: c.heldCount,
        baseTicks: c.baseTicks,
        startNs: c.startNs,
        running: c.running,
        gate: c.gate,
        readState: c.readState,
        writeState: c.writeState,
        writeLatch: c.writeLatch,
        latchedCount: c.latchedCount,
        countLatched: c.countLatched,
        status: c.status,
        statusLatched: c.statusLatched,
        nullCount: c.nullCount,
      })),
    };
  }

  restoreState(state: StateRecord): void {
    const id = this.snapshotId;
    checkVersion(state, STATE_VERSION, id);
    const port61 = stateInt(state, 'port61', id, 0, 0x0e);
    const out0 = stateBoolean(state, 'out0', id);
    const nextTick = stateIntOrNull(state, 'nextTick', id, 0, Number.MAX_SAFE_INTEGER);
    const recs = stateRecordList(state, 'channels', id, 3);
    const parsed = recs.map((r, i) => {
      const cid = `${id}.channels[${i}]`;
      const c = new PitChannel();
      c.modeBits = stateInt(r, 'modeBits', cid, 0, 7);
      c.rwMode = stateInt(r, 'rwMode', cid, 0, 3);
      c.bcd = stateBoolean(r, 'bcd', cid);
      c.reload = stateInt(r, 'reload', cid, 1, 0x10000);
      c.armed = stateBoolean(r, 'armed', cid);
      c.heldCount = stateInt(r, 'heldCount', cid, 0, 0x10000);
      c.baseTicks = stateInt(r, 'baseTicks', cid, 0, Number.MAX_SAFE_INTEGER);
      c.startNs = stateInt(r, 'startNs', cid, 0, Number.MAX_SAFE_INTEGER);
      c.running = stateBoolean(r, 'running', cid);
      c.gate = stateBoolean(r, 'gate', cid);
      c.readState = stateInt(r, 'readState', cid, 0, 4);
      c.writeState = stateInt(r, 'writeState', cid, 0, 4);
      c.writeLatch = stateInt(r, 'writeLatch', cid, 0, 0xff);
      c.latchedCount = stateInt(r, 'latchedCount', cid, 0, 0xffff);
      c.countLatched = stateInt(r, 'countLatched', cid, 0, 4);
      c.status = stateInt(r, 'status', cid, 0, 0xff);
      c.statusLatched = stateBoolean(r, 'statusLatched', cid);
      c.nullCount = stateBoolean(r, 'nullCount', cid);
      return c;
    });
    // Only commit once every field parsed, so a bad record leaves the device untouched.
    this.cancelTimer();
    parsed.forEach((c, i) => (this.ch[i] = c));
    this.port61 = port61;
    this.out0 = out0;
    // Re-arm exactly the transition that was pending, not "the next one after now":
    // a transition due at the snapshot instant has not fired yet.
    this.schedule(nextTick);
  }
}
