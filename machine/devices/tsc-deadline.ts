/**
 * The LAPIC timer's TSC-deadline mode (SDM Vol. 3 10.5.4.1): IA32_TSC_DEADLINE
 * holds a TSC value, and the timer fires when the TSC reaches it. The TSC runs
 * on virtual time (machine/cpu/x86/tsc.ts), so whoever handles the MSR write
 * turns the value into the virtual time it is due; this keeps the armed value,
 * that time and the pending timer, and follows the SDM's rules: writes outside
 * deadline mode are ignored, 0 disarms, the MSR reads 0 once the timer fired,
 * and switching between deadline mode and the count modes disarms it.
 */
import type { TimerHandle, VirtualClock } from './device.js';
import { StateError, type StateValue } from '../state.js';

export class TscDeadlineTimer {
  private value = 0n;
  private dueNs: number | null = null;
  private handle: TimerHandle | null = null;
  private deadlineMode = false;

  constructor(
    private readonly clock: VirtualClock,
    private readonly expired: () => void,
  ) {}

  /** IA32_TSC_DEADLINE as the guest reads it. */
  get deadline(): bigint {
    return this.value;
  }

  /** WRMSR IA32_TSC_DEADLINE: `dueNs` is the virtual time at which the TSC reaches `value`. */
  write(value: bigint, dueNs: number): void {
    if (!this.deadlineMode) return;
    this.cancel();
    this.value = value;
    if (value !== 0n) this.arm(dueNs);
  }

  /** The LVT timer entry was written: leaving or entering deadline mode disarms. */
  setMode(deadlineMode: boolean): void {
    if (deadlineMode !== this.deadlineMode) {
      this.cancel();
      this.value = 0n;
    }
    this.deadlineMode = deadlineMode;
  }

  reset(): void {
    this.cancel();
    this.value = 0n;
    this.deadlineMode = false;
  }

  private arm(dueNs: number): void {
    this.dueNs = dueNs;
    this.handle = this.clock.schedule(dueNs, () => {
      this.handle = null;
      this.dueNs = null;
      this.value = 0n;
      this.expired();
    });
  }

  private cancel(): void {
    if (this.handle) this.clock.cancel(this.handle);
    this.handle = null;
    this.dueNs = null;
  }

  saveState(): StateValue {
    return { value: this.value.toString(), dueNs: this.dueNs, deadlineMode: this.deadlineMode };
  }

  /** `rec` absent: a record from before deadline mode existed (disarmed). */
  restoreState(rec: StateValue | undefined, who: string): void {
    if (rec === undefined) {
      this.reset();
      return;
    }
    if (rec === null || typeof rec !== 'object' || Array.isArray(rec) || rec instanceof Uint8Array) throw new StateError(who, 'tscDeadline', 'not a record');
    const { value, dueNs, deadlineMode } = rec;
    if (typeof value !== 'string' || !/^\d{1,20}$/.test(value) || BigInt(value) >= 1n << 64n) throw new StateError(who, 'tscDeadline.value', `${JSON.stringify(value)} is not a 64-bit TSC value`);
    if (dueNs !== null && (typeof dueNs !== 'number' || !Number.isSafeInteger(dueNs) || dueNs < 0)) throw new StateError(who, 'tscDeadline.dueNs', `${JSON.stringify(dueNs)} is not a virtual time`);
    if (typeof deadlineMode !== 'boolean') throw new StateError(who, 'tscDeadline.deadlineMode', 'not a boolean');
    this.reset();
    this.deadlineMode = deadlineMode;
    this.value = BigInt(value);
    if (dueNs !== null) this.arm(dueNs);
  }
}
