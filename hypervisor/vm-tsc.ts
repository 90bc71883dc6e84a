/**
 * A VM's time-stamp counters (machine/cpu/x86/tsc.ts): every vCPU reads the
 * VM clock at TSC_HZ plus its own offset, which only a WRMSR to IA32_TSC
 * changes (as KVM's per-vCPU tsc_offset). The clock is the VM's own, which
 * stands still while the VM is paused and travels in its state, so the TSC
 * is the same after a snapshot restore, a migration or a live update as
 * before; the offsets travel in the VM record next to the clock.
 */
import { nsAtTsc, tscAt, tscOffsetFor } from '../machine/cpu/x86/tsc.js';
import { StateError, type StateValue } from '../machine/state.js';

export class VmTsc {
  private readonly offsets: bigint[];

  /** `nowNs`: the VM's virtual time at the running instruction. */
  constructor(
    vcpus: number,
    private readonly nowNs: () => number,
  ) {
    this.offsets = new Array<bigint>(vcpus).fill(0n);
  }

  read(vcpu: number): bigint {
    return tscAt(this.nowNs(), this.offset(vcpu));
  }

  write(vcpu: number, value: bigint): void {
    this.offsets[vcpu] = tscOffsetFor(value, this.nowNs());
  }

  /** VM time at which this vCPU's TSC reaches `value` (IA32_TSC_DEADLINE). */
  nsAt(vcpu: number, value: bigint): number {
    return nsAtTsc(value, this.offset(vcpu));
  }

  private offset(vcpu: number): bigint {
    const o = this.offsets[vcpu];
    if (o === undefined) throw new Error(`no TSC for vCPU ${vcpu}`);
    return o;
  }

  /** Offsets as signed decimal strings (bigint is not a state value). */
  saveState(): StateValue {
    return this.offsets.map((o) => o.toString());
  }

  /** `rec` absent: a record from before the TSC was virtual, whose vCPUs all start at offset 0. */
  restoreState(rec: StateValue | undefined, who: string): void {
    if (rec === undefined || rec === null) {
      this.offsets.fill(0n);
      return;
    }
    if (!Array.isArray(rec) || rec.length !== this.offsets.length) throw new StateError(who, 'tscOffsets', `expected ${this.offsets.length} TSC offsets`);
    const parsed = rec.map((v, i) => {
      if (typeof v !== 'string' || !/^-?\d{1,20}$/.test(v)) throw new StateError(who, `tscOffsets[${i}]`, `${JSON.stringify(v)} is not a decimal TSC offset`);
      const o = BigInt(v);
      if (o !== BigInt.asIntN(64, o)) throw new StateError(who, `tscOffsets[${i}]`, `${v} is outside the signed 64-bit range`);
      return o;
    });
    parsed.forEach((o, i) => (this.offsets[i] = o));
  }
}
