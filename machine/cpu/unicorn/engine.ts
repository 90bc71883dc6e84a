/**
 * One Unicorn engine (one logical CPU's execution core), wrapped in typed methods.
 * Callbacks are registered with koffi and unregistered on close.
 */
import koffi from 'koffi';
import type { TypeObject } from 'koffi';
import { check, loadUnicorn, UnicornError, type UnicornLibrary } from './binding.js';
import {
  INS,
  UC_ARCH_X86,
  UC_CTL_CPU_MODEL_WRITE,
  UC_CTL_USE_EXITS_WRITE,
  UC_CTL_TB_FLUSH,
  UC_CTL_TB_REMOVE_CACHE,
  UC_CTL_TCG_BUFFER_SIZE_READ,
  UC_CTL_TCG_BUFFER_SIZE_WRITE,
  UC_CTL_TLB_FLUSH,
  UC_CTL_TLB_TYPE_WRITE,
  UC_HOOK_INSN,
  UC_HOOK_INSN_INVALID,
  UC_HOOK_INTR,
  UC_HOOK_MEM_FETCH_UNMAPPED,
  UC_HOOK_MEM_READ,
  UC_HOOK_MEM_WRITE,
  UC_MEM_WRITE,
  UC_HOOK_MEM_READ_UNMAPPED,
  UC_HOOK_MEM_WRITE_PROT,
  UC_HOOK_MEM_WRITE_UNMAPPED,
  UC_HOOK_TLB_FILL,
  UC_TLB_VIRTUAL,
} from './constants.js';
import { X86_CPU_MODEL } from '../x86/cpu-model.js';

export type InHandler = (port: number, size: 1 | 2 | 4) => number;
export type OutHandler = (port: number, size: 1 | 2 | 4, value: number) => void;
export type IntrHandler = (intno: number) => void;
export type Handler = () => void;
/** Fill `entry` by returning {paddr, perms}, or null to refuse (a fault). */
export type TlbFillHandler = (vaddr: bigint, type: number) => { paddr: bigint; perms: number } | null;
export type MmioReadHandler = (offset: number, size: number) => bigint;
export type MmioWriteHandler = (offset: number, size: number, value: bigint) => void;
export type MemInvalidHandler = (type: number, addr: bigint, size: number, value: bigint) => boolean;

/** Translated-code buffer per engine (Unicorn's default is 1 GiB). */
export const TCG_BUFFER_BYTES = 32 * 1024 * 1024;

/** 2^64 as BigInt: koffi passes uint64 >= 2^63 to callbacks as negative numbers. */
const U64 = 1n << 64n;
const asU64 = (v: number | bigint): bigint => {
  const b = typeof v === 'bigint' ? v : BigInt(Math.trunc(v));
  return b < 0n ? b + U64 : b;
};

export class UnicornEngine {
  readonly lib: UnicornLibrary;
  private uc: unknown;
  private closed = false;
  private readonly callbacks: unknown[] = [];
  /** Memory native hooks point at: kept alive as long as the engine. */
  private readonly keep: Buffer[] = [];
  private readonly scratch = Buffer.alloc(64);
  /** Typed views of scratch for the per-register hot path (no Buffer method calls to compile or run). */
  private readonly scratch64 = new BigUint64Array(this.scratch.buffer, this.scratch.byteOffset, 8);
  private readonly scratch32 = new Uint32Array(this.scratch.buffer, this.scratch.byteOffset, 16);
  private readonly hookOut = [0n];
  private ctx: unknown = null;
  private ctxSize = 0;
  private ctxView: Uint8Array | null = null;

  constructor(mode: number, cpuModel: number = X86_CPU_MODEL) {
    this.lib = loadUnicorn();
    const out: unknown[] = [null];
    check(this.lib, 'uc_open', this.lib.fn.open(UC_ARCH_X86, mode, out));
    this.uc = out[0];
    // Before anything else touches the engine: the model decides which instructions TCG executes.
    check(this.lib, 'uc_ctl(CPU_MODEL)', this.lib.fn.ctl1(this.uc, UC_CTL_CPU_MODEL_WRITE, 'int', cpuModel));
    // Unicorn 2.1 memsets the whole translated-code buffer on every TB flush (tcg_region_reset_all):
    // with the default 1 GiB that is 2.5 s the first time (page faults) and 0.1 s after, and 1 GiB
    // of RSS per engine. Our firmware, OS and guests translate a few MiB at most; a full buffer only
    // means QEMU flushes and goes on.
    check(this.lib, 'uc_ctl(TCG_BUFFER_SIZE)', this.lib.fn.ctl1(this.uc, UC_CTL_TCG_BUFFER_SIZE_WRITE, 'uint32_t', TCG_BUFFER_BYTES));
    // No `until`: every address is a possible instruction boundary (an AP started by SIPI vector 0
    // runs from linear 0), so runs stop only on HLT, stops, errors and exceptions. With the exit
    // list enabled and empty, Unicorn ignores `until` and invalidates no exit TB after a run.
    check(this.lib, 'uc_ctl(USE_EXITS)', this.lib.fn.ctl1(this.uc, UC_CTL_USE_EXITS_WRITE, 'int', 1));
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** The translated-code buffer size Unicorn settled on (it may adjust what was asked for). */
  tcgBufferSize(): number {
    const out = Buffer.alloc(4);
    check(this.lib, 'uc_ctl(TCG_BUFFER_SIZE)', this.lib.fn.ctl1(this.uc, UC_CTL_TCG_BUFFER_SIZE_READ, 'void *', out));
    return out.readUInt32LE(0);
  }

  /** Software TLB through our fill hook: the guest walk is ours (see machine/cpu/x86/paging.ts). */
  useVirtualTlb(): void {
    check(this.lib, 'uc_ctl(TLB_TYPE)', this.lib.fn.ctl1(this.uc, UC_CTL_TLB_TYPE_WRITE, 'int', UC_TLB_VIRTUAL));
  }

  flushTlb(): void {
    check(this.lib, 'uc_ctl(TLB_FLUSH)', this.lib.fn.ctl0(this.uc, UC_CTL_TLB_FLUSH));
  }

  /** Drop translated code overlapping [begin, end): host writes to guest memory go unnoticed otherwise. */
  invalidateCode(begin: number, end: number): void {
    check(this.lib, 'uc_ctl(TB_REMOVE_CACHE)', this.lib.fn.ctl2(this.uc, UC_CTL_TB_REMOVE_CACHE, 'uint64_t', BigInt(begin), 'uint64_t', BigInt(end)));
  }

  flushCode(): void {
    check(this.lib, 'uc_ctl(TB_FLUSH)', this.lib.fn.ctl0(this.uc, UC_CTL_TB_FLUSH));
  }

  readReg(id: number): bigint {
    check(this.lib, 'uc_reg_read', this.lib.fn.regRead(this.uc, id, this.scratch));
    return this.scratch64[0]!;
  }

  readReg32(id: number): number {
    this.scratch64[0] = 0n;
    check(this.lib, 'uc_reg_read', this.lib.fn.regRead(this.uc, id, this.scratch));
    return this.scratch32[0]!;
  }

  writeReg(id: number, value: bigint | number): void {
    this.scratch64[0] = asU64(value);
    check(this.lib, 'uc_reg_write', this.lib.fn.regWrite(this.uc, id, this.scratch));
  }

  /** A register wider than 64 bits (x87 ST: 10 bytes, XMM: 16) as raw little-endian bytes. */
  readRegBytes(id: number, length: number): Buffer {
    this.scratch.fill(0);
    check(this.lib, 'uc_reg_read', this.lib.fn.regRead(this.uc, id, this.scratch));
    return Buffer.from(this.scratch.subarray(0, length));
  }

  writeRegBytes(id: number, bytes: Uint8Array): void {
    this.scratch.fill(0);
    this.scratch.set(bytes.subarray(0, Math.min(bytes.length, this.scratch.length)));
    check(this.lib, 'uc_reg_write', this.lib.fn.regWrite(this.uc, id, this.scratch));
  }

  /** GDTR/IDTR/LDTR/TR as uc_x86_mmr {selector u16 @0, base u64 @8, limit u32 @16, flags u32 @20}. */
  readMmr(id: number): { selector: number; base: bigint; limit: number; flags: number } {
    this.scratch.fill(0, 0, 24);
    check(this.lib, 'uc_reg_read', this.lib.fn.regRead(this.uc, id, this.scratch));
    return {
      selector: this.scratch.readUInt16LE(0),
      base: this.scratch.readBigUInt64LE(8),
      limit: this.scratch.readUInt32LE(16),
      flags: this.scratch.readUInt32LE(20),
    };
  }

  writeMmr(id: number, v: { selector: number; base: bigint; limit: number; flags: number }): void {
    this.scratch.fill(0, 0, 24);
    this.scratch.writeUInt16LE(v.selector, 0);
    this.scratch.writeBigUInt64LE(v.base, 8);
    this.scratch.writeUInt32LE(v.limit >>> 0, 16);
    this.scratch.writeUInt32LE(v.flags >>> 0, 20);
    check(this.lib, 'uc_reg_write', this.lib.fn.regWrite(this.uc, id, this.scratch));
  }

  /**
   * Set by a CPU whose MSR accesses may be intercepted: runs the API access
   * with the intercept lifted, or returns undefined (MSR unreachable: the read
   * gives 0 and the write is dropped, as for an unknown MSR).
   */
  msrGuard: (<T>(index: number, write: boolean, access: () => T) => T | undefined) | undefined;

  readMsr(index: number): bigint {
    return this.msrGuard ? (this.msrGuard(index, false, () => this.rawReadMsr(index)) ?? 0n) : this.rawReadMsr(index);
  }

  writeMsr(index: number, value: bigint): void {
    if (this.msrGuard) this.msrGuard(index, true, () => this.rawWriteMsr(index, value));
    else this.rawWriteMsr(index, value);
  }

  private rawReadMsr(index: number): bigint {
    this.scratch.fill(0, 0, 16);
    this.scratch.writeUInt32LE(index >>> 0, 0);
    check(this.lib, 'uc_reg_read(MSR)', this.lib.fn.regRead(this.uc, 248, this.scratch));
    return this.scratch.readBigUInt64LE(8);
  }

  private rawWriteMsr(index: number, value: bigint): void {
    this.scratch.fill(0, 0, 16);
    this.scratch.writeUInt32LE(index >>> 0, 0);
    this.scratch.writeBigUInt64LE(value, 8);
    check(this.lib, 'uc_reg_write(MSR)', this.lib.fn.regWrite(this.uc, 248, this.scratch));
  }

  /** Map host memory (page-aligned view) at a guest-physical address; both sides share the bytes. */
  mapHost(addr: number, view: Uint8Array, perms: number): void {
    check(this.lib, `uc_mem_map_ptr(0x${addr.toString(16)}, 0x${view.byteLength.toString(16)})`, this.lib.fn.memMapPtr(this.uc, BigInt(addr), view.byteLength, perms, view));
  }

  mapMmio(addr: number, size: number, read: MmioReadHandler, write: MmioWriteHandler): void {
    const r = this.register((_uc: unknown, off: number | bigint, sz: number) => read(Number(off), sz), this.lib.proto.mmioRead);
    const w = this.register((_uc: unknown, off: number | bigint, sz: number, value: number | bigint) => write(Number(off), sz, asU64(value)), this.lib.proto.mmioWrite);
    check(this.lib, `uc_mmio_map(0x${addr.toString(16)})`, this.lib.fn.mmioMap(this.uc, BigInt(addr), size, r, null, w, null));
  }

  memRead(addr: bigint, length: number): Buffer {
    const buf = Buffer.alloc(length);
    check(this.lib, 'uc_mem_read', this.lib.fn.memRead(this.uc, addr, buf, length));
    return buf;
  }

  onIn(h: InHandler): void {
    const cb = this.register((_uc: unknown, port: number, size: number) => h(port, size as 1 | 2 | 4) >>> 0, this.lib.proto.in);
    this.addInsnHook(cb, INS.IN);
  }

  onOut(h: OutHandler): void {
    const cb = this.register((_uc: unknown, port: number, size: number, value: number) => h(port, size as 1 | 2 | 4, value >>> 0), this.lib.proto.out);
    this.addInsnHook(cb, INS.OUT);
  }

  /**
   * IN/OUT through the native permission gate (machine/cpu/x86/io-permission.ts):
   * `gate` is its shared struct; the handlers are called with it telling them
   * whether the access needs the I/O bitmap check, and refuse it by setting its fault.
   */
  onPortIo(h: { in: InHandler; out: OutHandler }, gate: Buffer): void {
    const i = this.register((_uc: unknown, port: number, size: number) => h.in(port, size as 1 | 2 | 4) >>> 0, this.lib.proto.in);
    const o = this.register((_uc: unknown, port: number, size: number, value: number) => h.out(port, size as 1 | 2 | 4, value >>> 0), this.lib.proto.out);
    gate.writeBigUInt64LE(BigInt(koffi.address(i as bigint)), 0);
    gate.writeBigUInt64LE(BigInt(koffi.address(o as bigint)), 8);
    this.keep.push(gate);
    check(this.lib, 'fm_add_io_hooks', this.lib.fn.ioHooks(this.uc, Buffer.alloc(16), gate));
  }

  /**
   * CPUID/SYSCALL: the handler emulates the instruction; returning true skips Unicorn's own.
   * (Unicorn 2.1 refuses RDMSR/WRMSR/RDTSC hooks with UC_ERR_HOOK; MSR exits come from x86/msr-intercept.ts.)
   */
  onInsn(insn: 'CPUID' | 'SYSCALL', h: () => boolean): void {
    const cb = this.register(() => (h() ? 1 : 0), this.lib.proto.cpuid);
    this.addInsnHook(cb, INS[insn]);
  }

  onInterrupt(h: IntrHandler): void {
    const cb = this.register((_uc: unknown, intno: number) => h(intno), this.lib.proto.intr);
    this.addHook(UC_HOOK_INTR, cb);
  }

  /** A code hook on one address range (breakpoints); cheap outside the range. Returns the hook handle. */
  onCode(begin: bigint, end: bigint, h: (address: bigint) => void): bigint {
    const cb = this.register((_uc: unknown, addr: number | bigint) => h(asU64(addr)), this.lib.proto.code);
    const out = [0n];
    check(this.lib, 'uc_hook_add(CODE)', this.lib.fn.hookAdd(this.uc, out, 1 << 2, cb, null, begin, end));
    this.codeHooks.add(out[0]!);
    return out[0]!;
  }

  /**
   * A hook on data reads and/or writes whose linear address is in [begin, end]
   * (gdb watchpoints). Unicorn's TCG calls it from its load/store helpers;
   * code translated before the hook was added skips it, so flush it. Returns the hook handle.
   */
  onMemAccess(kinds: { read: boolean; write: boolean }, begin: bigint, end: bigint, h: (write: boolean, address: bigint, size: number, value: bigint) => void): bigint {
    const cb = this.register((_uc: unknown, type: number, addr: number | bigint, size: number, value: number | bigint) => h(type === UC_MEM_WRITE, asU64(addr), size, asU64(value)), this.lib.proto.mem);
    const out = [0n];
    const type = (kinds.read ? UC_HOOK_MEM_READ : 0) | (kinds.write ? UC_HOOK_MEM_WRITE : 0);
    check(this.lib, 'uc_hook_add(MEM)', this.lib.fn.hookAdd(this.uc, out, type, cb, null, begin, end));
    this.hookCallbacks.set(out[0]!, cb);
    return out[0]!;
  }

  /**
   * A native code hook on every address that ends the run before the next
   * instruction once armWatchStop() was called (from a memory hook): exact
   * data watchpoints. About 10 ns per instruction while installed.
   */
  stopAtEveryInstruction(): bigint {
    const out = [0n];
    check(this.lib, 'fm_add_watch_stop_hook', this.lib.fn.watchStopHook(this.uc, out, this.watchStop));
    this.codeHooks.add(out[0]!);
    return out[0]!;
  }

  /** From inside a memory hook: stop before the instruction after this one. */
  armWatchStop(): void {
    this.watchStop.writeUInt32LE(1, 0);
  }

  /**
   * After a run: the linear address the watch stop left off at (QEMU put PC
   * back at the block's start; the caller writes this instead), or null.
   */
  takeWatchStop(): bigint | null {
    if (this.watchStop.readUInt32LE(4) === 0) {
      this.watchStop.writeUInt32LE(0, 0);
      return null;
    }
    this.watchStop.writeUInt32LE(0, 4);
    return this.watchStop.readBigUInt64LE(8);
  }

  /** fm_watch_stop: armed u32, hit u32, stop_pc u64. */
  private readonly watchStop = Buffer.alloc(16);
  /** Callbacks of removable hooks, released with their hook (koffi has a bounded number of them). */
  private readonly hookCallbacks = new Map<bigint, unknown>();

  /** Code hooks installed now: while there is one, Unicorn leaves a stale PC after a block-hook stop. */
  private readonly codeHooks = new Set<bigint>();
  /** Unicorn's own count hook (a code hook) outlives a counted run by one more run. */
  private countHookLingers = false;
  private lastRunHadCodeHooks = false;

  /** Whether a code hook existed during the last run (ours, or Unicorn's instruction counter). */
  get hasCodeHooks(): boolean {
    return this.lastRunHadCodeHooks;
  }

  removeHook(handle: bigint): void {
    check(this.lib, 'uc_hook_del', this.lib.fn.hookDel(this.uc, handle));
    this.codeHooks.delete(handle);
    const cb = this.hookCallbacks.get(handle);
    if (cb !== undefined) {
      this.hookCallbacks.delete(handle);
      this.callbacks.splice(this.callbacks.indexOf(cb), 1);
      koffi.unregister(cb as bigint);
    }
  }

  onInvalidInstruction(h: () => boolean): void {
    const cb = this.register(() => h(), this.lib.proto.insnInvalid);
    this.addHook(UC_HOOK_INSN_INVALID, cb);
  }

  onTlbFill(h: TlbFillHandler): void {
    this.addHook(UC_HOOK_TLB_FILL, this.tlbFillCallback(h));
  }

  /** `h` as Unicorn's uc_cb_tlbevent_t: fills the entry from its answer. */
  private tlbFillCallback(h: TlbFillHandler): unknown {
    return this.register((_uc: unknown, vaddr: number | bigint, type: number, entry: unknown) => {
      const r = h(asU64(vaddr), type);
      if (!r) return false;
      koffi.encode(entry, 0, 'uint64_t', r.paddr);
      koffi.encode(entry, 8, 'uint32_t', r.perms);
      return true;
    }, this.lib.proto.tlbFill);
  }

  /**
   * The TLB-fill hook in C (machine/cpu/native-tlb.ts): `install(uc, cb)` adds it with `h`, as a
   * C function pointer, for the fills C leaves to JavaScript. False if it could not be added.
   */
  onTlbFillNative(h: TlbFillHandler, install: (uc: unknown, cb: unknown) => number): boolean {
    return install(this.uc, this.tlbFillCallback(h)) === 0; // UC_ERR_OK
  }

  /** Accesses to unmapped or read-only memory; return true to continue (the access is dropped). */
  onMemInvalid(h: MemInvalidHandler): void {
    const cb = this.register((_uc: unknown, type: number, addr: number | bigint, size: number, value: number | bigint) => h(type, asU64(addr), size, asU64(value)), this.lib.proto.memInvalid);
    this.addHook(UC_HOOK_MEM_READ_UNMAPPED | UC_HOOK_MEM_WRITE_UNMAPPED | UC_HOOK_MEM_FETCH_UNMAPPED | UC_HOOK_MEM_WRITE_PROT, cb);
  }

  /** Calls a native helper with this engine's uc_engine handle (machine/cpu/native-tlb.ts probes). */
  withHandle<T>(f: (uc: unknown) => T): T {
    return f(this.uc);
  }

  /** The native preemption + virtual-time hook (machine/cpu/native/fmcpu.c). */
  attachSlice(slice: Buffer): void {
    const out = [0n];
    check(this.lib, 'fm_add_block_hook', this.lib.fn.blockHook(this.uc, out, slice));
  }

  /** Counts every executed instruction into `counter` (u64 at offset 0). Slow: benchmarks only. */
  countInstructions(counter: Buffer): void {
    const out = [0n];
    check(this.lib, 'fm_add_code_counter', this.lib.fn.codeCounter(this.uc, out, counter));
  }

  /** CR0, CR3, CR4, EFER and the CS selector in one native call (the TLB-fill hot path). */
  pagingState(out: BigUint64Array): void {
    check(this.lib, 'fm_paging_state', this.lib.fn.pagingState(this.uc, out));
  }

  /**
   * QEMU's CPUState of this engine, for native interrupt requests
   * (machine/cpu/x86/native-irq.ts): where uc_struct points at it, and how
   * far its CPUX86State (holding the register bytes `regs` at `regsOffset`) lies beyond it.
   */
  findCpuState(regs: Uint8Array, regsOffset: number, scanBytes: number): { cpuField: number; envOffset: number } | number {
    const out = new BigUint64Array(2);
    const rc = this.lib.fn.findCpu(this.uc, regs, regs.length, regsOffset, scanBytes, out) as number;
    return rc === 0 ? { cpuField: Number(out[0]), envOffset: Number(out[1]) } : rc;
  }

  /** Offset of CPUState.interrupt_request (found by raising `mask`), or a negative count of candidates. */
  findInterruptRequest(cpuField: number, envOffset: number, mask: number): number {
    return this.lib.fn.findInterruptRequest(this.uc, cpuField, envOffset, mask) as number;
  }

  /** cpu_interrupt(cpu, mask): serviced by QEMU at the next instruction boundary of a run. */
  raiseIrq(cpuField: number, mask: number): void {
    this.lib.fn.raiseIrq(this.uc, cpuField, mask);
  }

  /** Bit 0: EFLAGS.IF, bit 1: interrupt shadow (HF_INHIBIT_IRQ), read from QEMU's env at these CPUState offsets. */
  irqWindow(cpuField: number, eflagsAt: number, hflagsAt: number): number {
    return this.lib.fn.irqWindow(this.uc, cpuField, eflagsAt, hflagsAt) as number;
  }

  /** Clears `mask` from the interrupt requests; returns the bits of it that were still pending. */
  takeIrq(cpuField: number, requestOffset: number, mask: number): number {
    return this.lib.fn.takeIrq(this.uc, cpuField, requestOffset, mask) as number;
  }

  /** Runs until HLT, a stop, an error or an exception (no `until` address: see the constructor). */
  start(begin: bigint, count = 0): number {
    this.lastRunHadCodeHooks = this.codeHooks.size > 0 || count > 0 || this.countHookLingers;
    this.countHookLingers = count > 0;
    return this.lib.fn.emuStart(this.uc, begin, 0n, 0n, count) as number;
  }

  stop(): void {
    check(this.lib, 'uc_emu_stop', this.lib.fn.emuStop(this.uc));
  }

  errorText(code: number): string {
    return String(this.lib.fn.strerror(code));
  }

  /** The raw CPU context (CPUX86State image). Returns a copy. */
  saveContext(): Uint8Array {
    return this.contextView().slice();
  }

  /**
   * The context saved into the engine's own context buffer, without a copy:
   * valid until the next contextView/saveContext call. For hot paths (interrupt
   * delivery), which patch it and hand it back to restoreContext.
   */
  contextView(): Uint8Array {
    this.ensureContext();
    check(this.lib, 'uc_context_save', this.lib.fn.contextSave(this.uc, this.ctx));
    return this.ctxView!;
  }

  restoreContext(blob: Uint8Array): void {
    this.ensureContext();
    if (blob.byteLength !== this.ctxSize) throw new UnicornError('uc_context_restore', 15, `context is ${blob.byteLength} bytes, engine expects ${this.ctxSize}`);
    if (blob !== this.ctxView) this.ctxView!.set(blob);
    check(this.lib, 'uc_context_restore', this.lib.fn.contextRestore(this.uc, this.ctx));
  }

  get contextSize(): number {
    this.ensureContext();
    return this.ctxSize;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.ctx) this.lib.fn.contextFree(this.ctx);
    this.lib.fn.close(this.uc);
    for (const cb of this.callbacks) koffi.unregister(cb as bigint);
    this.callbacks.length = 0;
  }

  private ensureContext(): void {
    if (this.ctx) return;
    const out: unknown[] = [null];
    check(this.lib, 'uc_context_alloc', this.lib.fn.contextAlloc(this.uc, out));
    this.ctx = out[0];
    this.ctxSize = Number(this.lib.fn.contextSize(this.uc));
    this.ctxView = new Uint8Array(koffi.view(this.ctx, this.ctxSize));
  }

  private register(fn: (...args: never[]) => unknown, proto: unknown): unknown {
    const cb = koffi.register(fn as (...args: unknown[]) => unknown, koffi.pointer(proto as TypeObject));
    this.callbacks.push(cb);
    return cb;
  }

  private addHook(type: number, cb: unknown): void {
    check(this.lib, 'uc_hook_add', this.lib.fn.hookAdd(this.uc, this.hookOut, type, cb, null, 1n, 0n));
  }

  private addInsnHook(cb: unknown, insn: number): void {
    check(this.lib, 'uc_hook_add(INSN)', this.lib.fn.hookAddInsn(this.uc, this.hookOut, UC_HOOK_INSN, cb, null, 1n, 0n, 'int', insn));
  }
}
