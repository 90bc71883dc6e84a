/**
 * Port I/O permission: IOPL and the TSS I/O permission bitmap, for every
 * IN/OUT/INS/OUTS of bare-metal CPUs and vCPUs alike.
 *
 * Unicorn 2.1 compiles QEMU's check out, so port I/O runs at any CPL. The
 * engine's IN/OUT hooks are native wrappers (machine/cpu/native/fmcpu.c) that
 * read CPL, IOPL and VM from QEMU's env and flag the accesses the SDM
 * subjects to the bitmap (Vol. 1 19.5: protected mode with CPL > IOPL, or
 * virtual-8086 mode). For those, `ioBitmapFault` below reads the TSS the way
 * QEMU's check_io does, and a refusal is raised by the wrapper as #GP(0) on
 * the instruction before the device sees anything.
 *
 * The wrapper needs the engine's CPUState (to find env and to raise), found
 * once per process (cpu-state.ts, shared with native-irq.ts). If this Unicorn
 * build defeats that, `ioPermissionLayout()` says why and port I/O is unchecked.
 */
import { loadUnicorn } from '../unicorn/binding.js';
import { engineCpuState } from './cpu-state.js';
import { contextLayout, SEG, SEG_CACHE_SIZE } from './context-layout.js';

/** env->eflags, after regs[16] and eip in QEMU's CPUX86State. */
const EFLAGS_IN_REGS = 17 * 8;

/** Offsets of the native fm_io struct (fmcpu.c). */
export const IO_GATE = { jsIn: 0, jsOut: 8, cpuField: 16, envOffset: 20, hflagsAt: 24, eflagsAt: 28, check: 32, fault: 36, errorCode: 40, unraised: 44, denied: 48, size: 64 } as const;

export interface IoPermissionLayout {
  /** Offset in uc_struct of `CPUState *cpu`. */
  cpuField: number;
  /** From CPUState to QEMU's CPUX86State (what raise_exception_err_ra takes). */
  envOffset: number;
  /** env->hflags and env->eflags, from CPUX86State. */
  hflagsAt: number;
  eflagsAt: number;
}

let cached: IoPermissionLayout | string | undefined;

/** Where the native I/O wrappers find CPL, IOPL and VM, or why port I/O cannot be checked in this build. */
export function ioPermissionLayout(): IoPermissionLayout | string {
  cached ??= discover();
  return cached;
}

function discover(): IoPermissionLayout | string {
  const found = engineCpuState();
  if (typeof found === 'string') return found;
  // A symbol look-up in the helper: no engine needed.
  if ((loadUnicorn().fn.initIo() as number) !== 0) return 'libunicorn does not export raise_exception_err_ra';
  const L = contextLayout();
  // `found.envOffset` is where the context blob's offsets start; QEMU's CPUX86State itself starts at regs[0].
  return { cpuField: found.cpuField, envOffset: found.envOffset + L.regs, hflagsAt: L.hflags - L.regs, eflagsAt: EFLAGS_IN_REGS };
}

/** The native gate's shared struct, filled with a layout (the engine writes the callback pointers). */
export function makeIoGate(layout: IoPermissionLayout): Buffer {
  const b = Buffer.alloc(IO_GATE.size);
  b.writeUInt32LE(layout.cpuField, IO_GATE.cpuField);
  b.writeUInt32LE(layout.envOffset, IO_GATE.envOffset);
  b.writeUInt32LE(layout.hflagsAt, IO_GATE.hflagsAt);
  b.writeUInt32LE(layout.eflagsAt, IO_GATE.eflagsAt);
  return b;
}

/** TR's hidden part, as loaded by LTR or a task switch. */
export interface TaskRegister {
  base: bigint;
  limit: number;
  /** QEMU's descriptor flags: type in bits 8-11, P bit 15. */
  flags: number;
}

export function taskRegister(blob: Uint8Array): TaskRegister {
  const dv = new DataView(blob.buffer, blob.byteOffset, blob.byteLength);
  const o = contextLayout().segs + SEG.TR * SEG_CACHE_SIZE;
  return { base: dv.getBigUint64(o + 8, true), limit: dv.getUint32(o + 16, true), flags: dv.getUint32(o + 20, true) };
}

/** A supervisor read of the TSS: the bytes, or the #PF the read takes. */
export type LinearRead = (linear: bigint, length: number) => Uint8Array | { pageFault: number; cr2: bigint };

export type IoFault = { vector: 13; errorCode: 0; reason: string } | { vector: 14; errorCode: number; cr2: bigint; reason: string };

/**
 * The I/O permission bitmap check for `size` bytes at `port` (SDM Vol. 1
 * 19.5.2; QEMU check_io): TR must hold a present 32/64-bit TSS with a limit of
 * at least 103; the bitmap offset is the word at TSS+0x66; the two bytes
 * holding the port's bits must lie within the limit, and every bit for the
 * access width must be clear. Returns null when the access is allowed.
 */
export function ioBitmapFault(tr: TaskRegister, read: LinearRead, port: number, size: 1 | 2 | 4): IoFault | null {
  const type = (tr.flags >> 8) & 0xf;
  const deny = (reason: string): IoFault => ({ vector: 13, errorCode: 0, reason: `port 0x${port.toString(16)} (${size} byte${size > 1 ? 's' : ''}): ${reason}` });
  if (!(tr.flags & (1 << 15)) || (type !== 9 && type !== 0xb) || tr.limit < 103) return deny('no valid 32/64-bit TSS in TR');
  const word = (offset: number): number | IoFault => {
    const r = read(tr.base + BigInt(offset), 2);
    if (!(r instanceof Uint8Array)) return { vector: 14, errorCode: r.pageFault, cr2: r.cr2, reason: `port 0x${port.toString(16)}: TSS not readable at 0x${r.cr2.toString(16)}` };
    return r[0]! | (r[1]! << 8);
  };
  const base = word(0x66);
  if (typeof base !== 'number') return base;
  const at = base + (port >> 3);
  if (at + 1 > tr.limit) return deny(`bitmap byte at TSS+0x${at.toString(16)} beyond the TSS limit 0x${tr.limit.toString(16)}`);
  const bits = word(at);
  if (typeof bits !== 'number') return bits;
  if ((bits >> (port & 7)) & ((1 << size) - 1)) return deny('denied by the I/O permission bitmap');
  return null;
}

/** Byte reads at linear addresses through a CPU's page walk (supervisor, no A/D updates). */
export function linearReader(translate: (linear: bigint) => { ok: true; paddr: bigint } | { ok: false; errorCode: number }, readU8: (paddr: number) => number): LinearRead {
  return (linear, length) => {
    const out = new Uint8Array(length);
    for (let i = 0; i < length; i++) {
      const at = linear + BigInt(i);
      const t = translate(at);
      if (!t.ok) return { pageFault: t.errorCode, cr2: at };
      out[i] = readU8(Number(t.paddr));
    }
    return out;
  };
}

/**
 * One engine's side of the native gate: consulted by the port handlers inside
 * the IN/OUT hooks, and after a run for what the gate raised.
 */
export class PortIoGate {
  readonly buffer: Buffer;
  private readonly u32: Uint32Array;
  private readonly u64: BigUint64Array;
  private lastFault: IoFault | null = null;
  private seenDenied = 0n;
  private seenUnraised = 0;

  constructor(layout: IoPermissionLayout) {
    this.buffer = makeIoGate(layout);
    this.u32 = new Uint32Array(this.buffer.buffer, this.buffer.byteOffset, IO_GATE.size / 4);
    this.u64 = new BigUint64Array(this.buffer.buffer, this.buffer.byteOffset, IO_GATE.size / 8);
  }

  /**
   * Inside an IN/OUT hook, before the device: false if the access is refused
   * (the gate then raises the fault on the instruction). `tr` and `read` are
   * only called for accesses the SDM subjects to the bitmap.
   */
  permits(port: number, size: 1 | 2 | 4, tr: () => TaskRegister, read: LinearRead): boolean {
    if (this.u32[IO_GATE.check / 4] === 0) return true;
    const f = ioBitmapFault(tr(), read, port, size);
    if (!f) return true;
    this.u32[IO_GATE.fault / 4] = f.vector + 1;
    this.u32[IO_GATE.errorCode / 4] = f.errorCode;
    this.lastFault = f;
    return false;
  }

  /** After a run that ended in an exception: the refusal the gate raised, if that is what it was. */
  takeRaised(vector: number): IoFault | null {
    const denied = this.u64[IO_GATE.denied / 8]!;
    if (denied === this.seenDenied) return null;
    this.seenDenied = denied;
    const f = this.lastFault;
    return f && f.vector === vector ? f : null;
  }

  /** After a run: a refusal that could not be raised precisely (the run was stopped instead). */
  takeUnraised(): IoFault | null {
    const n = this.u32[IO_GATE.unraised / 4]!;
    if (n === this.seenUnraised) return null;
    this.seenUnraised = n;
    return this.lastFault;
  }
}
