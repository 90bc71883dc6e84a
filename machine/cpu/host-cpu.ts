/**
 * A host CPU: one Unicorn engine that runs whichever CPU context is bound to
 * it. The machine owns one per logical CPU; its own CPUs and, after a
 * hypervisor takes over, any number of vCPUs take turns on them. A context
 * that is not bound lives in a plain byte buffer, so a VM costs no engines
 * and creating one costs no uc_open.
 *
 * What belongs to the engine rather than to a context lives here: the
 * translated code (and which physical pages it came from), the slice struct
 * the native block hook counts in, and the hooks, which dispatch to the
 * context bound right now.
 */
import { UnicornEngine } from './unicorn/engine.js';
import { UC_MODE_64, UC_PROT_ALL, UC_PROT_EXEC, UC_PROT_READ } from './unicorn/constants.js';
import type { PhysicalMemory } from '../memory/physical-memory.js';
import type { X86Cpu } from './x86-cpu.js';
import { ioPermissionLayout, PortIoGate } from './x86/io-permission.js';
import { NativeTlb } from './native-tlb.js';

/** Offsets in the native slice struct (machine/cpu/native/fmcpu.c); a stop request sets request and zeroes limit. */
export const SLICE = { units: 0, limit: 8, stopped: 16, request: 20, stopPc: 32 } as const;

/** Pages of per-CPU device registers (a LAPIC) that each bound context routes to its own devices. */
export interface LocalWindow {
  base: number;
  size: number;
}

export class HostCpu {
  readonly engine: UnicornEngine;
  readonly slice = Buffer.alloc(64);
  /** Typed views of the slice struct: read and written around every run. */
  readonly slice64 = new BigUint64Array(this.slice.buffer, this.slice.byteOffset, 8);
  readonly slice32 = new Uint32Array(this.slice.buffer, this.slice.byteOffset, 16);
  /** The context loaded into the engine; every hook works for it. */
  private bound: X86Cpu | null = null;
  /** Physical pages the engine has translated code from: host writes elsewhere need no code flush. */
  private readonly codePages = new Set<number>();
  /** Host code wrote into a code page; the translated code goes before the next run. */
  flushCodePending = false;
  /** Inside uc_emu_start: no other context may be bound now. */
  running = false;
  /** The port I/O privilege gate of this engine (null: this Unicorn build defeats it; see io-permission.ts). */
  ioGate: PortIoGate | null = null;
  /** The TLB-fill hook in C (native-tlb.ts); the bound vCPU prepares it before each slice. */
  readonly nativeTlb: NativeTlb;
  /** Context switches so far (a measure of how hard the scheduler thrashes engines). */
  switches = 0;

  constructor(
    readonly index: number,
    memory: PhysicalMemory,
    windows: readonly LocalWindow[],
  ) {
    this.engine = new UnicornEngine(UC_MODE_64);
    this.nativeTlb = new NativeTlb(memory);
    this.mapMemory(memory, windows);
    // Host writes (DMA, loaders, debugger pokes, restores) bypass QEMU's self-modifying-code detection.
    memory.onHostWrite((addr, length) => this.invalidateCode(addr, length));
    this.engine.useVirtualTlb();
    this.installHooks();
    this.slice64[SLICE.limit / 8] = 0n;
    this.engine.attachSlice(this.slice);
  }

  get resident(): X86Cpu | null {
    return this.bound;
  }

  /**
   * Loads `cpu` into the engine, parking whoever was there. Costs a context
   * copy each way and a TLB flush (the two may run in different address spaces).
   */
  bind(cpu: X86Cpu): void {
    if (this.bound === cpu) return;
    const old = this.bound;
    if (old) {
      old.park();
      this.bound = null;
    }
    this.bound = cpu;
    this.switches++;
    cpu.load(this);
    this.engine.flushTlb();
  }

  /** Parks the bound context (before the context is thrown away or the engine closed). */
  unbind(cpu: X86Cpu): void {
    if (this.bound !== cpu) return;
    cpu.park();
    this.bound = null;
  }

  /** A page held translated code (called from the TLB fill of a fetch). */
  noteCodePage(page: number): void {
    this.codePages.add(page);
    this.nativeTlb.markCode(page);
  }

  /** Every translation of host page `page` was dropped (X86Cpu.dropCodePage): it holds no code now. */
  codeDropped(page: number): void {
    this.codePages.delete(page);
    this.nativeTlb.unmarkCode(page);
  }

  isCodePage(page: number): boolean {
    return this.codePages.has(page);
  }

  /**
   * The guest got write access to a page holding translated code. Unicorn 2.1 catches only
   * the first store into such a page (then it drops the TLB entry's write protection while
   * other blocks of the page remain, and later stores leave them stale: Linux's alternatives
   * patching ran a patched-away call). Drop translated code before the next block. (A TLB
   * flush instead, to re-arm Unicorn's own detection, crashed Unicorn with SIGBUS.)
   * See docs/linux.md and test/cpu/smc-irq.test.ts.
   */
  noteCodeWrite(): void {
    this.flushCodePending = true;
    this.bound?.requestStop();
  }

  invalidateCode(addr: number, length: number): void {
    if (this.flushCodePending) return;
    for (let p = addr - (addr % 4096); p < addr + length; p += 4096) {
      if (this.codePages.has(p)) {
        this.flushCodePending = true;
        this.bound?.requestStop();
        return;
      }
    }
  }

  /** Drops translated code if host writes asked for it. */
  flushCodeIfPending(): void {
    if (!this.flushCodePending) return;
    this.engine.flushCode();
    this.codePages.clear();
    this.nativeTlb.clearCode();
    this.flushCodePending = false;
  }

  private mapMemory(m: PhysicalMemory, windows: readonly LocalWindow[]): void {
    const e = this.engine;
    for (const r of m.regions) {
      if (r.kind === 'ram') e.mapHost(r.base, r.view!, UC_PROT_ALL);
      else if (r.kind === 'rom' || r.kind === 'rom-alias') e.mapHost(r.base, r.view!, UC_PROT_READ | UC_PROT_EXEC);
      else if (r.kind === 'open-bus') e.mapMmio(r.base, r.size, (_o, size) => (1n << BigInt(size * 8)) - 1n, () => {});
      else if (r.kind === 'bad-ram') {
        const f = r.faulty!;
        e.mapMmio(r.base, r.size, (o, size) => f.read(o, size), (o, size, v) => f.write(o, size, v));
      }
    }
    for (const w of windows) {
      e.mapMmio(
        w.base,
        w.size,
        (o, size) => this.bound?.localMmioRead(w.base, o, size) ?? (1n << BigInt(size * 8)) - 1n,
        (o, size, v) => this.bound?.localMmioWrite(w.base, o, size, v),
      );
    }
  }

  private installHooks(): void {
    const e = this.engine;
    // Port I/O goes through the native IOPL / I/O-bitmap gate where this build allows (x86/io-permission.ts).
    const io = ioPermissionLayout();
    this.ioGate = typeof io === 'string' ? null : new PortIoGate(io);
    const ioIn = (port: number, size: 1 | 2 | 4): number => this.bound!.hookIn(port, size);
    const ioOut = (port: number, size: 1 | 2 | 4, value: number): void => this.bound!.hookOut(port, size, value);
    if (this.ioGate) e.onPortIo({ in: ioIn, out: ioOut }, this.ioGate.buffer);
    else {
      e.onIn(ioIn);
      e.onOut(ioOut);
    }
    e.onInterrupt((intno) => this.bound!.hookInterrupt(intno));
    e.onInvalidInstruction(() => false);
    e.onInsn('CPUID', () => this.bound!.hookCpuid());
    e.onInsn('SYSCALL', () => this.bound!.hookSyscall());
    // Refills that change nothing are answered in C; the rest (and every fill without the C path) here.
    const fill = (vaddr: bigint, type: number): { paddr: bigint; perms: number } | null => this.bound!.hookTlbFill(vaddr, type);
    if (!this.nativeTlb.install(e, fill)) e.onTlbFill(fill);
    e.onMemInvalid(() => false);
  }

  close(): void {
    if (this.bound) this.unbind(this.bound);
    this.engine.close();
  }
}
