/**
 * The debug registers of hypervisor vCPUs, kept by us and never by the engine.
 *
 * A guest that arms a breakpoint through DR7 crashes Unicorn 2.1 (SIGSEGV in
 * cpu_breakpoint_insert). vCPU contexts run in SVM guest mode already (MSR
 * exits, msr-intercept.ts), and QEMU checks the VMCB's DR intercept words
 * (env->intercept_dr_read/write, right after env->intercept) on every MOV
 * to/from DRn at CPL 0 (at CPL > 0 the MOV raises #GP before that). With all
 * of them intercepted, every MOV DR exits to us with RIP on the instruction:
 * we emulate it against our copy of DR0-DR7 here.
 *
 * Breakpoints (SDM Vol. 3 ch. 17): instruction breakpoints (R/W = 00) enabled
 * by L or G are implemented as #DB faults (DR6.Bn, RIP on the instruction,
 * RF suppresses them for one instruction) through engine code hooks on their
 * linear addresses. Data and I/O breakpoints (R/W = 01, 10, 11) are refused:
 * a MOV to DR7 that would enable one raises #GP(0) and DR7 keeps its value.
 * General detect (DR7.GD) raises #DB with DR6.BD on the next MOV DR.
 */
import { UnicornEngine } from '../unicorn/engine.js';
import { REG, UC_MODE_64, UC_PROT_ALL } from '../unicorn/constants.js';
import { cachedProbe } from '../unicorn/probe-cache.js';
import { armMsrIntercept, EXCP_VMEXIT, MSRPM_BYTES, svmLayout, VMCB_MSRPM_BASE_PA, type SvmLayout } from './msr-intercept.js';
import { decodeMovSpecialRegister } from './mov-special-register.js';

export const SVM_EXIT_READ_DR0 = 0x20;
export const SVM_EXIT_WRITE_DR0 = 0x30;
/** DR6 bits that read as 1 (reserved), and DR7's bit 10. */
export const DR6_FIXED_1 = 0xffff_0ff0n;
export const DR7_FIXED_1 = 0x400n;
/** Writable bits: DR6 B0-B3, BD, BS, BT; DR7 L/G0-3, LE, GE, GD, R/W and LEN fields. */
const DR6_WRITABLE = 0xe00fn;
const DR7_WRITABLE = 0xffff_23ffn;
const DR7_GD = 1n << 13n;
const DR6_BD = 1n << 13n;
const CR4_DE = 1n << 3n;

/** env->intercept_dr_read / _write: u16 each, after env->intercept (u64) and the two CR words. */
const DR_READ_AFTER_INTERCEPT = 12;
const DR_WRITE_AFTER_INTERCEPT = 14;

export function isDebugRegisterExit(code: number): boolean {
  return code >= SVM_EXIT_READ_DR0 && code < SVM_EXIT_WRITE_DR0 + 8 && (code & 0xf) < 8;
}

/** Intercepts every MOV to and from DR0-DR7 of a context already in SVM guest mode. */
export function armDebugRegisterIntercept(blob: Uint8Array, svm: SvmLayout): void {
  const dv = new DataView(blob.buffer, blob.byteOffset, blob.byteLength);
  dv.setUint16(svm.intercept + DR_READ_AFTER_INTERCEPT, 0xff, true);
  dv.setUint16(svm.intercept + DR_WRITE_AFTER_INTERCEPT, 0xff, true);
}

let cached: true | string | undefined;

/** Whether MOV DR exits work in this build (checked once on a probe engine), and if not, why. */
export function debugRegisterIntercept(): true | string {
  cached ??= cachedProbe('debugRegisterIntercept', (v): v is true => v === true, probe, (v) => v === true);
  return cached;
}

function probe(): true | string {
  const svm = svmLayout();
  if (typeof svm === 'string') return `needs SVM guest mode: ${svm}`;
  const e = new UnicornEngine(UC_MODE_64);
  try {
    const ram = new Uint8Array(new SharedArrayBuffer(0x10000));
    e.mapHost(0, ram, UC_PROT_ALL);
    // mov rax, dr7; hlt; mov dr0, rcx; hlt   (DR7 itself is never written: the probe must not crash if the intercept fails)
    ram.set([0x0f, 0x21, 0xf8, 0xf4, 0x0f, 0x23, 0xc1, 0xf4], 0x1000);
    new DataView(ram.buffer).setBigUint64(0x3000 + VMCB_MSRPM_BASE_PA, 0x4000n, true);
    ram.fill(0, 0x4000, 0x4000 + MSRPM_BYTES);
    const blob = e.saveContext();
    armMsrIntercept(blob, svm, 0x3000);
    armDebugRegisterIntercept(blob, svm);
    e.restoreContext(blob);
    let seen = -1;
    e.onInterrupt((n) => {
      seen = n;
      e.stop();
    });
    for (const [at, want] of [[0x1000, SVM_EXIT_READ_DR0 + 7], [0x1004, SVM_EXIT_WRITE_DR0]] as const) {
      seen = -1;
      e.start(BigInt(at));
      if (seen !== EXCP_VMEXIT + want) return `DR intercept probe: MOV DR at 0x${at.toString(16)} raised ${seen < 0 ? 'nothing' : `0x${seen.toString(16)}`}, not SVM exit 0x${want.toString(16)}`;
      if (e.readReg(REG.RIP) !== BigInt(at)) return 'DR intercept probe: the exit is not on the MOV';
    }
    return true;
  } finally {
    e.close();
  }
}

/** A decoded MOV to/from DRn: 0F 21 /r (read) or 0F 23 /r (write); mod is ignored, as on hardware. */
export interface MovDr {
  write: boolean;
  dr: number;
  /** General register number 0-15 (RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI, R8-R15). */
  gpr: number;
  length: number;
}

export function decodeMovDr(bytes: Uint8Array, long: boolean): MovDr | null {
  const m = decodeMovSpecialRegister(bytes, long, 0x21, 0x23);
  // LOCK MOV DR is #UD, and DR8-DR15 do not exist: #UD (QEMU raises both before the intercept).
  if (!m || m.lock || m.reg > 7) return null;
  return { write: m.write, dr: m.reg, gpr: m.gpr, length: m.length };
}

export type DrOutcome = { kind: 'done'; value?: bigint } | { kind: 'fault'; vector: 1 | 6 | 13; reason: string };

/** One vCPU's DR0-DR7. */
export class DebugRegisters {
  readonly address = [0n, 0n, 0n, 0n];
  dr6 = DR6_FIXED_1;
  dr7 = DR7_FIXED_1;

  reset(): void {
    this.address.fill(0n);
    this.dr6 = DR6_FIXED_1;
    this.dr7 = DR7_FIXED_1;
  }

  /**
   * MOV from/to DRn at CPL 0 (the CPL check is QEMU's, before the intercept).
   * `value` is the source register for a write; the result carries the value of a read.
   */
  access(m: MovDr, value: bigint, cr4: bigint, long: boolean): DrOutcome {
    if ((m.dr === 4 || m.dr === 5) && cr4 & CR4_DE) return { kind: 'fault', vector: 6, reason: `MOV DR${m.dr} with CR4.DE set` };
    const dr = m.dr === 4 ? 6 : m.dr === 5 ? 7 : m.dr;
    if (this.dr7 & DR7_GD) {
      // General detect: #DB before the access, GD cleared so the handler can use the registers.
      this.dr7 &= ~DR7_GD;
      this.dr6 |= DR6_BD;
      return { kind: 'fault', vector: 1, reason: `MOV DR${m.dr} with DR7.GD set` };
    }
    if (!m.write) return { kind: 'done', value: dr < 4 ? this.address[dr]! : dr === 6 ? this.dr6 : this.dr7 };
    const v = long ? value : value & 0xffff_ffffn;
    if (dr < 4) {
      this.address[dr] = v;
      return { kind: 'done' };
    }
    if (v >> 32n) return { kind: 'fault', vector: 13, reason: `MOV DR${m.dr} with bits 63:32 set` };
    if (dr === 6) {
      this.dr6 = (v & DR6_WRITABLE) | DR6_FIXED_1;
      return { kind: 'done' };
    }
    const next = (v & DR7_WRITABLE) | DR7_FIXED_1;
    const refused = [0, 1, 2, 3].find((n) => enabled(next, n) && rw(next, n) !== 0);
    if (refused !== undefined) return { kind: 'fault', vector: 13, reason: `DR7 enables a ${rw(next, refused) === 2 ? 'I/O' : 'data'} breakpoint in DR${refused} (not supported: only instruction breakpoints are)` };
    this.dr7 = next;
    return { kind: 'done' };
  }

  /** Enabled instruction breakpoints: DR index and linear address. */
  instructionBreakpoints(): { n: number; address: bigint }[] {
    return [0, 1, 2, 3].filter((n) => enabled(this.dr7, n) && rw(this.dr7, n) === 0).map((n) => ({ n, address: this.address[n]! }));
  }

  /** An instruction breakpoint hit: DR6.Bn set (B0-B3 are sticky, as on hardware). */
  hit(mask: number): void {
    this.dr6 |= BigInt(mask & 0xf);
  }

  save(): string {
    return [...this.address, this.dr6, this.dr7].map((v) => v.toString(16)).join(',');
  }

  restore(s: string): void {
    const v = s.split(',').map((x) => BigInt(`0x${x}`));
    if (v.length !== 6) throw new Error(`debug registers: expected 6 values, got ${v.length}`);
    for (let i = 0; i < 4; i++) this.address[i] = v[i]!;
    this.dr6 = v[4]!;
    this.dr7 = v[5]!;
  }
}

const enabled = (dr7: bigint, n: number): boolean => ((dr7 >> BigInt(n * 2)) & 3n) !== 0n;
const rw = (dr7: bigint, n: number): number => Number((dr7 >> BigInt(16 + n * 4)) & 3n);
