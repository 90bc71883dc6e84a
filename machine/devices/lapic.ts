/**
 * Local APIC (xAPIC, MMIO at 0xFEE00000), one per CPU. Register layout and
 * version (0x50014: 6 LVT entries) match QEMU's userspace APIC; timer and
 * priority rules follow the Intel SDM vol. 3 ch. 11.
 *
 * The CPU layer owns IA32_APIC_BASE; it routes MMIO for its own CPU here,
 * asks hasInterrupt()/acknowledge() at instruction boundaries, and checks
 * extIntEnabled() before taking an interrupt from the 8259 (ExtINT goes first,
 * ignoring TPR, as in QEMU). IPIs leave through onIpi; the platform routes
 * them with accepts() and the accept*() methods on the target APICs.
 */
import { TscDeadlineTimer } from './tsc-deadline.js';
import type { MmioDevice, MmioRange, TimerHandle, VirtualClock, AccessSize } from './device.js';
import { checkVersion, stateBoolean, stateNumbers, StateError, type StateRecord } from '../state.js';
import { mulDivCeil, mulDivFloor, stateInt, stateIntOrNull } from './dev-util.js';

export const LAPIC_DEFAULT_BASE = 0xfee00000;
export const LAPIC_VERSION = 0x00050014;

export type IpiDeliveryMode = 'fixed' | 'lowest-priority' | 'smi' | 'nmi' | 'init' | 'startup' | 'extint' | 'reserved';
export type IpiShorthand = 'none' | 'self' | 'all-including-self' | 'all-excluding-self';

/** An interrupt command written to the ICR, for the platform to route. */
export interface IpiMessage {
  /** APIC ID of the sender. */
  readonly source: number;
  /** ICR[63:56] (xAPIC 8-bit destination). Ignored when destinationShorthand is not 'none'. */
  readonly destination: number;
  readonly destinationMode: 'physical' | 'logical';
  readonly destinationShorthand: IpiShorthand;
  readonly mode: IpiDeliveryMode;
  readonly vector: number;
  /** ICR level bit: false together with mode 'init' and trigger 'level' is the INIT de-assert, which does nothing. */
  readonly level: boolean;
  readonly trigger: 'edge' | 'level';
}

/** Effects on the CPU this APIC belongs to, supplied by the CPU layer. */
export interface LapicCpuHooks {
  /** hasInterrupt() may have changed (wake a halted CPU / re-check at the next boundary). */
  onInterruptChange?: (pending: boolean) => void;
  /** INIT received: the CPU resets and (APs) waits for SIPI. The APIC has already reset itself. */
  onInit?: () => void;
  /** SIPI received while waiting for one: start at vector << 12 in real mode. */
  onStartup?: (vector: number) => void;
  onNmi?: () => void;
  onSmi?: () => void;
}

export interface LocalApicOptions {
  clock: VirtualClock;
  apicId: number;
  /** The bootstrap processor: at reset its LINT0 is ExtINT and unmasked (see below). */
  bsp: boolean;
  /** Timer input clock before the divider. Default 1 GHz, i.e. one count per ns at divide-by-1. */
  busFrequencyHz?: number;
  base?: number;
  /** ICR writes. The platform delivers to every APIC for which accepts(msg) is true. */
  onIpi?: (msg: IpiMessage) => void;
  /** EOI of a level-triggered vector (TMR set): broadcast to the I/O APIC. */
  onLevelEoi?: (vector: number) => void;
  cpu?: LapicCpuHooks;
}

// LVT indices, in register order 0x320..0x370 (1 = thermal, 2 = perf counters: stored, never fired).
const LVT_TIMER = 0;
const LVT_LINT0 = 3;
const LVT_LINT1 = 4;
const LVT_ERROR = 5;
const LVT_COUNT = 6;

const LVT_MASKED = 1 << 16;
const LVT_LEVEL = 1 << 15;
/** Writable bits per LVT (delivery status and remote IRR are read-only). */
const LVT_WRITABLE = [0x000700ff, 0x000107ff, 0x000107ff, 0x0001a7ff, 0x0001a7ff, 0x000100ff];

const SVR_ENABLE = 1 << 8;

const DM_FIXED = 0;
const DM_SMI = 2;
const DM_NMI = 4;
const DM_INIT = 5;
const DM_EXTINT = 7;

const ESR_SEND_ILLEGAL_VECTOR = 1 << 5;
const ESR_RECEIVE_ILLEGAL_VECTOR = 1 << 6;
const ESR_ILLEGAL_REGISTER = 1 << 7;

const TIMER_ONESHOT = 0;
const TIMER_PERIODIC = 1;
const TIMER_TSC_DEADLINE = 2;

const NS_PER_S = 1_000_000_000;
const DELIVERY_MODES: readonly IpiDeliveryMode[] = ['fixed', 'lowest-priority', 'smi', 'reserved', 'nmi', 'init', 'startup', 'extint'];
const SHORTHANDS: readonly IpiShorthand[] = ['none', 'self', 'all-including-self', 'all-excluding-self'];

/** Highest set bit in a 256-bit register held as 8 x 32-bit words, or -1. */
function highestBit(words: Uint32Array): number {
  for (let i = 7; i >= 0; i--) {
    const w = words[i]!;
    if (w !== 0) return i * 32 + 31 - Math.clz32(w);
  }
  return -1;
}

function setBit(words: Uint32Array, v: number): void {
  words[v >> 5] = (words[v >> 5]! | (1 << (v & 31))) >>> 0;
}

function clearBit(words: Uint32Array, v: number): void {
  words[v >> 5] = (words[v >> 5]! & ~(1 << (v & 31))) >>> 0;
}

function testBit(words: Uint32Array, v: number): boolean {
  return ((words[v >> 5]! >>> (v & 31)) & 1) !== 0;
}

const STATE_VERSION = 1;

export class LocalApic implements MmioDevice {
  readonly name: string;
  readonly snapshotId: string;
  readonly stateVersion = STATE_VERSION;
  readonly mmio: readonly MmioRange[];
  readonly bsp: boolean;
  readonly initialApicId: number;

  private readonly clock: VirtualClock;
  private readonly busHz: number;
  private readonly onIpi: ((msg: IpiMessage) => void) | undefined;
  private readonly onLevelEoi: ((vector: number) => void) | undefined;
  private readonly hooks: LapicCpuHooks;

  private id: number;
  private tpr = 0;
  private ldr = 0;
  private dfrModel = 0xf;
  private svr = 0xff;
  private readonly isr = new Uint32Array(8);
  private readonly tmr = new Uint32Array(8);
  private readonly irr = new Uint32Array(8);
  private esr = 0;
  private esrPending = 0;
  private icrLo = 0;
  private icrHi = 0;
  private readonly lvt = new Array<number>(LVT_COUNT).fill(LVT_MASKED);
  private lintLevel = [false, false];
  private initialCount = 0;
  private divideConf = 0;
  private timerStartNs = 0;
  /** Timer count (since timerStartNs) at which the next interrupt is due, or null. */
  private nextFireCount: number | null = null;
  private timer: TimerHandle | null = null;
  private hwEnabled = true;
  private waitingForSipi: boolean;
  private lastPending = false;
  /** IA32_TSC_DEADLINE and its timer (LVT timer mode 2). */
  readonly tscDeadline: TscDeadlineTimer;

  constructor(opts: LocalApicOptions) {
    this.clock = opts.clock;
    this.tscDeadline = new TscDeadlineTimer(opts.clock, () => this.localDeliver(LVT_TIMER));
    if (!Number.isInteger(opts.apicId) || opts.apicId < 0 || opts.apicId > 0xfe) throw new RangeError(`lapic: bad APIC ID ${opts.apicId}`);
    this.busHz = opts.busFrequencyHz ?? NS_PER_S;
    if (!Number.isSafeInteger(this.busHz) || this.busHz <= 0) throw new RangeError(`lapic: bad bus frequency ${opts.busFrequencyHz}`);
    this.id = opts.apicId;
    this.initialApicId = opts.apicId;
    this.bsp = opts.bsp;
    this.onIpi = opts.onIpi;
    this.onLevelEoi = opts.onLevelEoi;
    this.hooks = opts.cpu ?? {};
    const base = opts.base ?? LAPIC_DEFAULT_BASE;
    this.mmio = [{ base, length: 0x1000 }];
    this.name = `lapic@${opts.apicId}`;
    this.snapshotId = this.name;
    this.waitingForSipi = !this.bsp;
    this.reset();
  }

  // ---- reset ----

  /**
   * Power-on / RESET state per the SDM (all LVTs masked, SVR=0xFF so the APIC is
   * software-disabled, DFR all ones), except that the BSP's LINT0 is ExtINT and
   * unmasked (0x700). That is QEMU's reset value and what PC firmware programs for
   * virtual-wire mode, so 8259 interrupts reach the BSP before the APIC is set up.
   */
  reset(): void {
    this.initReset();
    this.id = this.initialApicId;
    this.hwEnabled = true;
    if (this.bsp) this.lvt[LVT_LINT0] = DM_EXTINT << 8;
    this.notify();
  }

  /** State after an INIT IPI: like reset but the APIC ID is kept and every LVT is masked. */
  private initReset(): void {
    this.tpr = 0;
    this.ldr = 0;
    this.dfrModel = 0xf;
    this.svr = 0xff;
    this.isr.fill(0);
    this.tmr.fill(0);
    this.irr.fill(0);
    this.esr = 0;
    this.esrPending = 0;
    this.icrLo = 0;
    this.icrHi = 0;
    this.lvt.fill(LVT_MASKED);
    this.initialCount = 0;
    this.divideConf = 0;
    this.timerStartNs = this.clock.nowNs();
    this.cancelTimer();
    this.tscDeadline.reset();
    this.waitingForSipi = !this.bsp;
  }

  // ---- CPU-facing interface ----

  /** APIC ID as currently programmed (bits 31:24 of the ID register). */
  apicId(): number {
    return this.id;
  }

  /**
   * IA32_APIC_BASE bit 11, owned by the CPU layer. A globally disabled APIC passes
   * the 8259's INTR straight to the CPU and delivers nothing itself.
   */
  setHardwareEnabled(enabled: boolean): void {
    if (enabled === this.hwEnabled) return;
    this.hwEnabled = enabled;
    if (!enabled) this.softwareDisable();
    this.notify();
  }

  hardwareEnabled(): boolean {
    return this.hwEnabled;
  }

  softwareEnabled(): boolean {
    return (this.svr & SVR_ENABLE) !== 0;
  }

  /** Whether the 8259's INTR reaches this CPU (LINT0 unmasked in ExtINT mode, or APIC globally off). */
  extIntEnabled(): boolean {
    if (!this.hwEnabled) return true;
    const l = this.lvt[LVT_LINT0]!;
    return !(l & LVT_MASKED) && ((l >> 8) & 7) === DM_EXTINT;
  }

  /** A fixed interrupt in IRR outranks the processor priority. */
  hasInterrupt(): boolean {
    if (!this.hwEnabled || !this.softwareEnabled()) return false;
    const v = highestBit(this.irr);
    return v >= 0 && (v & 0xf0) > (this.ppr() & 0xf0);
  }

  /**
   * INTA: moves the highest IRR vector to ISR and returns it. If nothing outranks
   * PPR any more (e.g. TPR was raised), returns the spurious vector and changes nothing.
   */
  acknowledge(): number {
    if (!this.hasInterrupt()) return this.svr & 0xff;
    const v = highestBit(this.irr);
    clearBit(this.irr, v);
    setBit(this.isr, v);
    this.notify();
    return v;
  }

  /** TPR, for lowest-priority arbitration. */
  taskPriority(): number {
    return this.tpr;
  }

  /** CR8 reads TPR[7:4]. */
  readCr8(): number {
    return this.tpr >> 4;
  }

  writeCr8(value: number): void {
    this.tpr = (value & 0xf) << 4;
    this.notify();
  }

  /** Does a message from the ICR of APIC `msg.source` target this APIC? */
  accepts(msg: IpiMessage): boolean {
    switch (msg.destinationShorthand) {
      case 'self':
        return msg.source === this.id;
      case 'all-including-self':
        return true;
      case 'all-excluding-self':
        return msg.source !== this.id;
      default:
        break;
    }
    const dest = msg.destination & 0xff;
    if (msg.destinationMode === 'physical') return dest === 0xff || dest === this.id;
    const ldr = this.ldr >>> 24;
    if (this.dfrModel === 0xf) return (dest & ldr) !== 0; // flat model
    if (this.dfrModel === 0x0) return dest === 0xff || ((dest >> 4) === (ldr >> 4) && (dest & ldr & 0x0f) !== 0); // cluster model
    return false;
  }

  /** A fixed / lowest-priority interrupt arriving from the bus (IPI, I/O APIC or MSI). */
  acceptIpi(vector: number, trigger: 'edge' | 'level' = 'edge'): void {
    if (!this.hwEnabled) return;
    vector &= 0xff;
    if (vector < 16) {
      this.signalError(ESR_RECEIVE_ILLEGAL_VECTOR);
      return;
    }
    this.setIrr(vector, trigger === 'level');
  }

  acceptInit(): void {
    if (!this.hwEnabled) return;
    this.initReset();
    this.notify();
    this.hooks.onInit?.();
  }

  /** SIPI is ignored unless the CPU is waiting for one after INIT (APs at power-on). */
  acceptStartup(vector: number): void {
    if (!this.hwEnabled || !this.waitingForSipi) return;
    this.waitingForSipi = false;
    this.hooks.onStartup?.(vector & 0xff);
  }

  acceptNmi(): void {
    this.hooks.onNmi?.();
  }

  acceptSmi(): void {
    this.hooks.onSmi?.();
  }

  /** Level of the LINT0/LINT1 pins (LINT1 is usually the NMI line). ExtINT is polled via extIntEnabled(). */
  setLint(pin: 0 | 1, level: boolean): void {
    const was = this.lintLevel[pin]!;
    this.lintLevel[pin] = level;
    const idx = pin === 0 ? LVT_LINT0 : LVT_LINT1;
    const l = this.lvt[idx]!;
    const levelTriggered = (l & LVT_LEVEL) !== 0 && ((l >> 8) & 7) === DM_FIXED;
    if (level && (!was || levelTriggered)) this.localDeliver(idx);
  }

  // ---- internals ----

  private ppr(): number {
    const isrv = Math.max(highestBit(this.isr), 0);
    return (this.tpr & 0xf0) >= (isrv & 0xf0) ? this.tpr : isrv & 0xf0;
  }

  private setIrr(vector: number, level: boolean): void {
    setBit(this.irr, vector);
    if (level) setBit(this.tmr, vector);
    else clearBit(this.tmr, vector);
    this.notify();
  }

  private notify(): void {
    const p = this.hasInterrupt();
    if (p !== this.lastPending) {
      this.lastPending = p;
      this.hooks.onInterruptChange?.(p);
    }
  }

  /** Deliver through an LVT entry (timer, LINTn, error, ...). */
  private localDeliver(idx: number): void {
    const l = this.lvt[idx]!;
    if (l & LVT_MASKED || !this.hwEnabled) return;
    // Timer and error entries have no delivery-mode field: always fixed.
    const mode = idx === LVT_TIMER || idx === LVT_ERROR ? DM_FIXED : (l >> 8) & 7;
    switch (mode) {
      case DM_FIXED: {
        const v = l & 0xff;
        if (v < 16) {
          if (idx !== LVT_ERROR) this.signalError(ESR_RECEIVE_ILLEGAL_VECTOR);
          return;
        }
        this.setIrr(v, (idx === LVT_LINT0 || idx === LVT_LINT1) && (l & LVT_LEVEL) !== 0);
        break;
      }
      case DM_NMI:
        this.hooks.onNmi?.();
        break;
      case DM_SMI:
        this.hooks.onSmi?.();
        break;
      case DM_INIT:
        this.acceptInit();
        break;
      default:
        break; // ExtINT is handled by the CPU polling extIntEnabled()
    }
  }

  private signalError(bits: number): void {
    const fresh = bits & ~this.esrPending;
    this.esrPending |= bits;
    if (fresh) this.localDeliver(LVT_ERROR);
  }

  /** SDM: a software-disabled APIC masks every LVT and ignores attempts to unmask. */
  private softwareDisable(): void {
    this.svr &= ~SVR_ENABLE;
    for (let i = 0; i < LVT_COUNT; i++) this.lvt[i] = this.lvt[i]! | LVT_MASKED;
    this.rearmTimer();
  }

  private eoi(): void {
    const v = highestBit(this.isr);
    if (v < 0) return;
    clearBit(this.isr, v);
    if (testBit(this.tmr, v)) this.onLevelEoi?.(v);
    this.notify();
  }

  private sendIpi(): void {
    const lo = this.icrLo;
    const mode = DELIVERY_MODES[(lo >> 8) & 7]!;
    const msg: IpiMessage = {
      source: this.id,
      destination: this.icrHi >>> 24,
      destinationMode: lo & (1 << 11) ? 'logical' : 'physical',
      destinationShorthand: SHORTHANDS[(lo >> 18) & 3]!,
      mode,
      vector: lo & 0xff,
      level: (lo & (1 << 14)) !== 0,
      trigger: lo & (1 << 15) ? 'level' : 'edge',
    };
    if ((mode === 'fixed' || mode === 'lowest-priority') && msg.vector < 16) {
      this.signalError(ESR_SEND_ILLEGAL_VECTOR);
      return;
    }
    this.onIpi?.(msg);
  }

  // ---- timer ----

  private divisor(): number {
    const v = (this.divideConf & 3) | ((this.divideConf >> 1) & 4);
    return 1 << ((v + 1) & 7);
  }

  private timerMode(): number {
    return (this.lvt[LVT_TIMER]! >> 17) & 3;
  }

  /** Timer counts elapsed since the initial count was written. */
  private elapsedCounts(now: number): number {
    return mulDivFloor(Math.max(0, now - this.timerStartNs), this.busHz, NS_PER_S * this.divisor());
  }

  private countTime(count: number): number {
    return this.timerStartNs + mulDivCeil(count, NS_PER_S * this.divisor(), this.busHz);
  }

  private currentCount(): number {
    const mode = this.timerMode();
    if (this.initialCount === 0 || (mode !== TIMER_ONESHOT && mode !== TIMER_PERIODIC)) return 0;
    const d = this.elapsedCounts(this.clock.nowNs());
    if (mode === TIMER_PERIODIC) return this.initialCount - (d % this.initialCount);
    return d >= this.initialCount ? 0 : this.initialCount - d;
  }

  private cancelTimer(): void {
    if (this.timer) this.clock.cancel(this.timer);
    this.timer = null;
    this.nextFireCount = null;
  }

  /** Schedule the next expiry; a masked timer keeps counting but schedules nothing. */
  private rearmTimer(): void {
    this.cancelTimer();
    const mode = this.timerMode();
    if (this.initialCount === 0 || this.lvt[LVT_TIMER]! & LVT_MASKED) return;
    const d = this.elapsedCounts(this.clock.nowNs());
    if (mode === TIMER_ONESHOT) {
      if (d < this.initialCount) this.scheduleFire(this.initialCount);
    } else if (mode === TIMER_PERIODIC) {
      this.scheduleFire((Math.floor(d / this.initialCount) + 1) * this.initialCount);
    }
  }

  private scheduleFire(count: number): void {
    this.nextFireCount = count;
    this.timer = this.clock.schedule(this.countTime(count), () => this.timerFired());
  }

  private timerFired(): void {
    this.timer = null;
    const count = this.nextFireCount;
    this.nextFireCount = null;
    if (count === null) return;
    this.localDeliver(LVT_TIMER);
    // Next period counts from this expiry, not from "now", so late callbacks keep the cadence.
    if (this.timerMode() === TIMER_PERIODIC && this.initialCount > 0) this.scheduleFire(count + this.initialCount);
  }

  // ---- MMIO ----

  mmioRead(offset: number, size: AccessSize): number {
    // QEMU answers sub-dword reads with 0; wider ones see the 32-bit register.
    if (size < 4) return 0;
    const index = (offset >> 4) & 0xff;
    switch (index) {
      case 0x02:
        return (this.id << 24) >>> 0;
      case 0x03:
        return LAPIC_VERSION;
      case 0x08:
        return this.tpr;
      case 0x09:
        return 0; // arbitration priority, as QEMU
      case 0x0a:
        return this.ppr();
      case 0x0b:
        return 0; // EOI is write-only
      case 0x0d:
        return this.ldr >>> 0;
      case 0x0e:
        return ((this.dfrModel << 28) | 0x0fffffff) >>> 0;
      case 0x0f:
        return this.svr;
      case 0x28:
        return this.esr;
      case 0x30:
        return this.icrLo; // delivery status (bit 12) always idle: IPIs are sent instantly
      case 0x31:
        return this.icrHi >>> 0;
      case 0x38:
        return this.initialCount;
      case 0x39:
        return this.currentCount();
      case 0x3e:
        return this.divideConf;
      default:
        if (index >= 0x10 && index <= 0x17) return this.isr[index - 0x10]!;
        if (index >= 0x18 && index <= 0x1f) return this.tmr[index - 0x18]!;
        if (index >= 0x20 && index <= 0x27) return this.irr[index - 0x20]!;
        if (index >= 0x32 && index <= 0x37) return this.lvt[index - 0x32]! >>> 0;
        this.signalError(ESR_ILLEGAL_REGISTER);
        return 0;
    }
  }

  mmioWrite(offset: number, size: AccessSize, value: number): void {
    if (size < 4) return;
    const index = (offset >> 4) & 0xff;
    const v = value >>> 0;
    switch (index) {
      case 0x02:
        this.id = v >>> 24;
        break;
      case 0x08:
        this.tpr = v & 0xff;
        this.notify();
        break;
      case 0x0b:
        this.eoi();
        break;
      case 0x0d:
        this.ldr = (v & 0xff000000) >>> 0;
        break;
      case 0x0e:
        this.dfrModel = v >>> 28;
        break;
      case 0x0f: {
        const wasEnabled = this.softwareEnabled();
        this.svr = v & 0x1ff;
        if (wasEnabled && !this.softwareEnabled()) this.softwareDisable();
        this.notify();
        break;
      }
      case 0x28:
        // Writing ESR latches the errors collected since the previous write.
        this.esr = this.esrPending;
        this.esrPending = 0;
        break;
      case 0x30:
        this.icrLo = v & ~(1 << 12);
        this.sendIpi();
        break;
      case 0x31:
        this.icrHi = (v & 0xff000000) >>> 0;
        break;
      case 0x38:
        this.initialCount = v;
        this.timerStartNs = this.clock.nowNs();
        this.rearmTimer();
        break;
      case 0x3e:
        this.divideConf = v & 0xb;
        this.rearmTimer();
        break;
      case 0x03:
      case 0x09:
      case 0x0a:
      case 0x39:
        break; // read-only
      default:
        if (index >= 0x10 && index <= 0x27) break; // ISR/TMR/IRR are read-only
        if (index >= 0x32 && index <= 0x37) {
          const n = index - 0x32;
          let val = v & LVT_WRITABLE[n]!;
          if (!this.softwareEnabled()) val |= LVT_MASKED;
          this.lvt[n] = val;
          if (n === LVT_TIMER) {
            this.tscDeadline.setMode(this.timerMode() === TIMER_TSC_DEADLINE);
            this.rearmTimer();
          }
          break;
        }
        this.signalError(ESR_ILLEGAL_REGISTER);
        break;
    }
  }

  // ---- inspection ----

  registers(): { id: number; tpr: number; ppr: number; svr: number; isr: number[]; irr: number[]; tmr: number[]; lvt: number[]; initialCount: number; currentCount: number; divideConf: number } {
    return {
      id: this.id,
      tpr: this.tpr,
      ppr: this.ppr(),
      svr: this.svr,
      isr: [...this.isr],
      irr: [...this.irr],
      tmr: [...this.tmr],
      lvt: [...this.lvt],
      initialCount: this.initialCount,
      currentCount: this.currentCount(),
      divideConf: this.divideConf,
    };
  }

  // ---- snapshot ----

  saveState(): StateRecord {
    return {
      version: STATE_VERSION,
      id: this.id,
      tpr: this.tpr,
      ldr: this.ldr,
      dfrModel: this.dfrModel,
      svr: this.svr,
      isr: [...this.isr],
      tmr: [...this.tmr],
      irr: [...this.irr],
      esr: this.esr,
      esrPending: this.esrPending,
      icrLo: this.icrLo,
      icrHi: this.icrHi,
      lvt: [...this.lvt],
      lint0: this.lintLevel[0]!,
      lint1: this.lintLevel[1]!,
      initialCount: this.initialCount,
      divideConf: this.divideConf,
      timerStartNs: this.timerStartNs,
      nextFireCount: this.nextFireCount,
      hwEnabled: this.hwEnabled,
      waitingForSipi: this.waitingForSipi,
      tscDeadline: this.tscDeadline.saveState(),
    };
  }

  restoreState(state: StateRecord): void {
    const c = this.snapshotId;
    checkVersion(state, STATE_VERSION, c);
    const words = (field: string, max: number, len: number): number[] => {
      const a = stateNumbers(state, field, c, len);
      a.forEach((x, i) => {
        if (!Number.isInteger(x) || x < 0 || x > max) throw new StateError(c, `${field}[${i}]`, `out of range: ${x}`);
      });
      return a;
    };
    const id = stateInt(state, 'id', c, 0, 0xff);
    const tpr = stateInt(state, 'tpr', c, 0, 0xff);
    const ldr = stateInt(state, 'ldr', c, 0, 0xffffffff);
    const dfrModel = stateInt(state, 'dfrModel', c, 0, 0xf);
    const svr = stateInt(state, 'svr', c, 0, 0x1ff);
    const isr = words('isr', 0xffffffff, 8);
    const tmr = words('tmr', 0xffffffff, 8);
    const irr = words('irr', 0xffffffff, 8);
    const esr = stateInt(state, 'esr', c, 0, 0xff);
    const esrPending = stateInt(state, 'esrPending', c, 0, 0xff);
    const icrLo = stateInt(state, 'icrLo', c, 0, 0xffffffff);
    const icrHi = stateInt(state, 'icrHi', c, 0, 0xffffffff);
    const lvt = words('lvt', 0xffffffff, LVT_COUNT);
    const lint0 = stateBoolean(state, 'lint0', c);
    const lint1 = stateBoolean(state, 'lint1', c);
    const initialCount = stateInt(state, 'initialCount', c, 0, 0xffffffff);
    const divideConf = stateInt(state, 'divideConf', c, 0, 0xb);
    const timerStartNs = stateInt(state, 'timerStartNs', c, 0, Number.MAX_SAFE_INTEGER);
    const nextFireCount = stateIntOrNull(state, 'nextFireCount', c, 0, Number.MAX_SAFE_INTEGER);
    const hwEnabled = stateBoolean(state, 'hwEnabled', c);
    const waitingForSipi = stateBoolean(state, 'waitingForSipi', c);
    // Checked (and the timer re-armed) before anything else changes: a bad record leaves the APIC as it was.
    this.tscDeadline.restoreState(state['tscDeadline'], c);

    this.cancelTimer();
    this.id = id;
    this.tpr = tpr;
    this.ldr = ldr;
    this.dfrModel = dfrModel;
    this.svr = svr;
    this.isr.set(isr);
    this.tmr.set(tmr);
    this.irr.set(irr);
    this.esr = esr;
    this.esrPending = esrPending;
    this.icrLo = icrLo;
    this.icrHi = icrHi;
    lvt.forEach((x, i) => (this.lvt[i] = x));
    this.lintLevel = [lint0, lint1];
    this.initialCount = initialCount;
    this.divideConf = divideConf;
    this.timerStartNs = timerStartNs;
    this.hwEnabled = hwEnabled;
    this.waitingForSipi = waitingForSipi;
    // Re-arm the exact pending expiry; one due at the snapshot instant has not fired yet.
    if (nextFireCount !== null) this.scheduleFire(nextFireCount);
    this.lastPending = this.hasInterrupt();
  }
}

/**
 * The APIC bus: hand an IPI to every APIC that accepts it. INIT level
 * de-assert (level 0, level-triggered) is the legacy "INIT deassert" and
 * resets nothing; SMI, ExtINT and reserved modes are not delivered.
 */
export function deliverIpi(lapics: Iterable<LocalApic>, msg: IpiMessage): void {
  for (const lapic of lapics) {
    if (!lapic.accepts(msg)) continue;
    if (msg.mode === 'init') {
      if (msg.level || msg.trigger === 'edge') lapic.acceptInit();
    } else if (msg.mode === 'startup') lapic.acceptStartup(msg.vector);
    else if (msg.mode === 'nmi') lapic.acceptNmi();
    else if (msg.mode === 'fixed' || msg.mode === 'lowest-priority') lapic.acceptIpi(msg.vector, msg.trigger);
  }
}
