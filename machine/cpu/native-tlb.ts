/**
 * The native TLB fill (machine/cpu/native/tlbfill.c): Unicorn's TLB-fill hook answered in C for
 * refills that change nothing (A/D bits already set, permissions granted, host RAM), without
 * crossing into JavaScript; everything else (faults, EPT violations, A/D updates, code pages,
 * MWAIT-watched pages, MMIO, bad RAM) still goes to X86Cpu.tlbFill, the reference.
 *
 * One struct per host engine, shared with C. Before every slice the bound vCPU's EPT pointer is
 * written into it (prepare), since the engine runs whichever context is scheduled.
 * FIRMAMENT_NATIVE_TLB=0 sends every fill to TypeScript (to compare, or to rule the C path out).
 *
 * It also counts the misses, which is how growIfThrashing sees a guest that keeps missing
 * Unicorn's TLB and lets it grow (docs/performance.md).
 */
import koffi from 'koffi';
import type { LibraryHandle } from 'koffi';
import { loadUnicorn } from './unicorn/binding.js';
import { NATIVE_HELPER } from './unicorn/locate.js';
import { MAX_PHYS_ADDR_BITS } from './x86/cpuid.js';
import type { PhysicalMemory } from '../memory/physical-memory.js';
import { UnicornEngine } from './unicorn/engine.js';
import { REG, UC_MODE_64 } from './unicorn/constants.js';
import { cachedProbe, hasIntFields } from './unicorn/probe-cache.js';
import { contextLayout, SEG, SEG_CACHE_SIZE } from './x86/context-layout.js';
import { engineCpuState } from './x86/cpu-state.js';

const MSR_EFER = 0xc000_0080;

/** Offsets in fm_tlb (tlbfill.c); keep in sync. */
const TLB = { eptp: 0, lowTop: 8, ramSize: 16, fast: 24, slow: 32, enabled: 40, maxPhys: 44, codeMap: 64, size: 96 } as const;
const ABI = 3;

/** QEMU's dynamic TLB (Unicorn 2.1): it starts at 2^8 entries and can double at each flush. */
const TLB_START_ENTRIES = 256;
/** Growth stops here: 64 Ki entries (about 3 MiB of TLB per MMU mode) cover a 256 MiB working set. */
const TLB_GROW_MAX_ENTRIES = 65536;
/** Misses since the last growth flush, per TLB entry, that justify the next one (the refill after it costs at most one miss per entry). */
const MISSES_PER_ENTRY_TO_GROW = 4;

interface TlbLib {
  install: (...args: unknown[]) => unknown;
  attachRam: (...args: unknown[]) => unknown;
  attachCodeMap: (...args: unknown[]) => unknown;
  walk: (...args: unknown[]) => unknown;
  setEnv: (...args: unknown[]) => unknown;
  pagingState: (...args: unknown[]) => unknown;
}

let lib: TlbLib | null | undefined;

/** The helper's TLB functions, or null when this build of it has none (then TypeScript fills every miss). */
export function nativeTlbLib(): TlbLib | null {
  if (lib !== undefined) return lib;
  lib = null;
  try {
    const unicorn = loadUnicorn();
    const h: LibraryHandle = koffi.load(NATIVE_HELPER);
    if ((h.func('int fm_tlb_abi_version(void)')() as number) !== ABI) return lib;
    if ((h.func('int fm_tlb_init(const char *path)')(unicorn.path) as number) !== 0) return lib;
    lib = {
      install: h.func('int fm_tlb_install(void *uc, _Out_ uint64_t *hh, void *tlb, void *ram, fm_tlb_cb *js)'),
      attachRam: h.func('void fm_tlb_attach_ram(void *tlb, void *ram)'),
      attachCodeMap: h.func('void fm_tlb_attach_code_map(void *tlb, void *map)'),
      walk: h.func('int fm_tlb_walk(void *tlb, uint64_t cr0, uint64_t cr3, uint64_t cr4, uint64_t efer, uint64_t cs, uint64_t vaddr, int type, _Out_ uint64_t *out)'),
      setEnv: h.func('void fm_tlb_set_env(void *tlb, uint32_t cpu_field, uint32_t env_offset, uint32_t cr_at, uint32_t efer_at, uint32_t cs_at)'),
      pagingState: h.func('int fm_tlb_paging_state(void *uc, void *tlb, _Out_ uint64_t *out)'),
    };
  } catch {
    lib = null; // an older helper without tlbfill.c
  }
  return lib;
}

export function nativeTlbWanted(env: NodeJS.ProcessEnv = process.env): boolean {
  return env['FIRMAMENT_NATIVE_TLB'] !== '0';
}

/** FIRMAMENT_TLB_GROW=0 keeps Unicorn's TLB at the size its own flushes give it (to compare). */
export function tlbGrowthWanted(env: NodeJS.ProcessEnv = process.env): boolean {
  return env['FIRMAMENT_TLB_GROW'] !== '0';
}

/** What decides whether the C path may answer for the vCPU about to run. */
export interface NativeTlbHost {
  /** Present with the EPT pointer when the vCPU's tables are a plain EPT the C walker may read. */
  readonly secondLevel?: { eptp?(): bigint };
  /** MWAIT monitors need every write fill in TypeScript; absent = assume yes. */
  hasWatchedPages?(): boolean;
}

export class NativeTlb {
  /** The struct shared with C (its address must not move: a Buffer's backing store does not). */
  readonly buffer = Buffer.alloc(TLB.size);
  private readonly view = new DataView(this.buffer.buffer, this.buffer.byteOffset, TLB.size);
  private installed = false;
  /** False for machines with bad RAM: those reads go through FaultyRam in TypeScript. */
  private readonly plainRam: boolean;

  /**
   * Pages holding translated code, 1 bit per 4 KiB of host RAM by RAM offset (set with the
   * host CPU's code pages): the C path never grants write to them, so every store into code
   * reaches X86Cpu.tlbFill, which drops the stale translations.
   */
  readonly codeMap: Uint8Array;

  constructor(private readonly memory: PhysicalMemory) {
    this.plainRam = !memory.regions.some((r) => r.kind === 'bad-ram');
    this.codeMap = new Uint8Array(Math.ceil(memory.ramSize / 4096 / 8));
    this.view.setBigUint64(TLB.lowTop, BigInt(memory.lowRamTop), true);
    this.view.setBigUint64(TLB.ramSize, BigInt(memory.ramSize), true);
    this.view.setUint32(TLB.maxPhys, MAX_PHYS_ADDR_BITS, true);
  }

  /** Installs the C hook on `engine` with `js` behind it; false if the helper has no native fill. */
  install(engine: UnicornEngine, js: Parameters<UnicornEngine['onTlbFill']>[0]): boolean {
    const l = nativeTlbLib();
    if (!l || !nativeTlbWanted()) return false;
    this.installed = engine.onTlbFillNative(js, (uc, cb) => l.install(uc, [0n], this.buffer, this.memory.ram, cb) as number);
    if (!this.installed) return false;
    l.attachCodeMap(this.buffer, this.codeMap);
    const env = pagingEnvLayout();
    if (typeof env !== 'string') l.setEnv(this.buffer, env.cpuField, env.envOffset, env.crAt, env.eferAt, env.csAt);
    return true;
  }

  /** A host-physical page now holds translated code. */
  markCode(page: number): void {
    const off = this.memory.ramOffset(page);
    if (off >= 0) this.codeMap[off >>> 15]! |= 1 << ((off >>> 12) & 7);
  }

  /** A host-physical page's translated code was dropped. */
  unmarkCode(page: number): void {
    const off = this.memory.ramOffset(page);
    if (off >= 0) this.codeMap[off >>> 15]! &= ~(1 << ((off >>> 12) & 7));
  }

  /** Translated code was flushed: no page holds any. */
  clearCode(): void {
    this.codeMap.fill(0);
  }

  /** Before a slice: the bound vCPU's EPT, and whether the C path may answer at all. */
  prepare(host: NativeTlbHost): void {
    if (!this.installed) return;
    let eptp = 0n;
    let ok = this.plainRam && host.hasWatchedPages?.() === false;
    if (ok && host.secondLevel) {
      const p = host.secondLevel.eptp?.();
      if (p === undefined) ok = false;
      else eptp = p;
    }
    this.view.setBigUint64(TLB.eptp, eptp, true);
    this.view.setUint32(TLB.enabled, ok ? 1 : 0, true);
  }

  /** What this engine's TLB is believed to hold (it only changes size at flushes). */
  private tlbEntries = TLB_START_ENTRIES;
  private missesAtFlush = 0;
  private readonly grow = tlbGrowthWanted();
  /** Flushes growIfThrashing made. */
  growthFlushes = 0;

  /**
   * After a slice: grow Unicorn's TLB when the guest keeps missing it. QEMU resizes its TLB only
   * at a flush that finds it over 70% used, and a guest that never flushes (a big working set,
   * one address space) would miss a 256-entry TLB forever, each miss a walk of guest tables and
   * EPT. So after MISSES_PER_ENTRY_TO_GROW misses per entry, flush once: the TLB doubles, and
   * the flush costs at most one refill per entry. A TLB flush keeps translated code and changes
   * no guest-visible state. Returns whether it flushed.
   */
  growIfThrashing(engine: { flushTlb(): void }): boolean {
    if (!this.installed || !this.grow || this.tlbEntries >= TLB_GROW_MAX_ENTRIES) return false;
    const misses = Number(this.view.getBigUint64(TLB.fast, true) + this.view.getBigUint64(TLB.slow, true));
    if (misses - this.missesAtFlush < MISSES_PER_ENTRY_TO_GROW * this.tlbEntries) return false;
    this.missesAtFlush = misses;
    this.tlbEntries *= 2;
    this.growthFlushes++;
    engine.flushTlb();
    return true;
  }

  /** CR0, CR3, CR4, EFER and the CS selector as the C fill reads them from `engine` (from env once the layout is known). */
  pagingState(engine: UnicornEngine): bigint[] {
    const l = nativeTlbLib();
    if (!l) throw new Error('native TLB fill unavailable: rebuild the helper (node tools/setup.mjs --no-images)');
    const out = new BigUint64Array(5);
    const rc = engine.withHandle((uc) => l.pagingState(uc, this.buffer, out)) as number;
    if (rc !== 0) throw new Error(`fm_tlb_paging_state failed (rc ${rc})`);
    return [...out];
  }

  /** Fills answered in C and in TypeScript since the engine started. */
  counts(): { native: number; js: number } {
    return { native: Number(this.view.getBigUint64(TLB.fast, true)), js: Number(this.view.getBigUint64(TLB.slow, true)) };
  }

  /**
   * The C walker alone, on given control registers (tests compare it with the TypeScript
   * walkers): the fill it would answer, or null where it leaves the fill to TypeScript.
   */
  static walk(memory: PhysicalMemory, eptp: bigint, ctl: { cr0: bigint; cr3: bigint; cr4: bigint; efer: bigint; cs: number }, vaddr: bigint, type: number): { paddr: bigint; perms: number } | null {
    const l = nativeTlbLib();
    if (!l) throw new Error('native TLB fill unavailable: rebuild the helper (node tools/setup.mjs --no-images)');
    const t = new NativeTlb(memory);
    t.view.setBigUint64(TLB.eptp, eptp, true);
    t.view.setUint32(TLB.enabled, 1, true);
    l.attachRam(t.buffer, memory.ram);
    const out = new BigUint64Array(2);
    const handled = l.walk(t.buffer, ctl.cr0, ctl.cr3, ctl.cr4, ctl.efer, BigInt(ctl.cs), vaddr, type, out) as number;
    return handled ? { paddr: out[0]!, perms: Number(out[1]) } : null;
  }
}

/** Where a miss finds CR0 (CR3, CR4 at +24, +32), EFER and the CS selector in QEMU's env. */
export interface PagingEnvLayout {
  cpuField: number;
  envOffset: number;
  crAt: number;
  eferAt: number;
  csAt: number;
}

let envLayout: PagingEnvLayout | string | undefined;

/**
 * The env offsets of this Unicorn build, or why the fill must use uc_reg_read. CR0/CR3/CR4 and
 * CS come from the context layout, EFER from a probe engine; then both readers must agree on
 * two sets of distinctive values, or the fill keeps uc_reg_read.
 */
export function pagingEnvLayout(): PagingEnvLayout | string {
  if (envLayout !== undefined) return envLayout;
  const cpu = engineCpuState();
  if (typeof cpu === 'string') return (envLayout = cpu);
  const same = (v: unknown): v is PagingEnvLayout => isEnvLayout(v) && v.cpuField === cpu.cpuField && v.envOffset === cpu.envOffset;
  envLayout = cachedProbe('tlbPagingEnv', same, () => probeEnvLayout(cpu), (v) => typeof v !== 'string');
  return envLayout;
}

const isEnvLayout = hasIntFields('cpuField', 'envOffset', 'crAt', 'eferAt', 'csAt');

/** EFER values the probe writes: SCE|LME|NXE, then SCE|NXE (QEMU sets LMA in a 64-bit engine). */
const PROBE_EFER = [0x901n, 0x801n] as const;
/** CR0, CR3, CR4, CS selector per round. */
const PROBE_REGS = [
  [0x8005_0033n, 0x0765_4000n, 0x6a0n, 0x2bn],
  [0x6000_0011n, 0x0123_8000n, 0x620n, 0x10n],
] as const;

function probeEnvLayout(cpu: { cpuField: number; envOffset: number }): PagingEnvLayout | string {
  const l = nativeTlbLib();
  if (!l) return 'no native TLB fill in the helper';
  const ctx = contextLayout();
  const e = new UnicornEngine(UC_MODE_64);
  try {
    e.readReg(REG.RAX); // Unicorn creates the CPU on the first register access
    let candidates: number[] | null = null;
    for (const value of PROBE_EFER) {
      e.writeMsr(MSR_EFER, value);
      const efer = e.readMsr(MSR_EFER); // QEMU may add LMA
      const blob = e.saveContext();
      const dv = new DataView(blob.buffer, blob.byteOffset, blob.byteLength);
      const hits: number[] = [];
      // The context is packed: 4-byte steps.
      for (let i = ctx.cr; i + 8 <= blob.length; i += 4) if (dv.getBigUint64(i, true) === efer) hits.push(i);
      candidates = candidates ? candidates.filter((c) => hits.includes(c)) : hits;
    }
    if (candidates?.length !== 1) return `EFER found at ${candidates?.length ?? 0} places in the context`;
    const layout: PagingEnvLayout = { cpuField: cpu.cpuField, envOffset: cpu.envOffset, crAt: ctx.cr, eferAt: candidates[0]!, csAt: ctx.segs + SEG.CS * SEG_CACHE_SIZE };
    const t = Buffer.alloc(TLB.size);
    const fromEnv = new BigUint64Array(5);
    const fromRegs = new BigUint64Array(5);
    for (const [i, [cr0, cr3, cr4, cs]] of PROBE_REGS.entries()) {
      e.writeReg(REG.CR4, cr4);
      e.writeReg(REG.CR3, cr3);
      e.writeReg(REG.CR0, cr0);
      e.writeMsr(MSR_EFER, PROBE_EFER[i]!);
      e.writeReg(REG.CS, cs);
      l.setEnv(t, 0, 0, 0, 0, 0);
      const rcRegs = e.withHandle((uc) => l.pagingState(uc, t, fromRegs)) as number;
      l.setEnv(t, layout.cpuField, layout.envOffset, layout.crAt, layout.eferAt, layout.csAt);
      e.withHandle((uc) => l.pagingState(uc, t, fromEnv));
      if (rcRegs !== 0) return `uc_reg_read failed in the probe (rc ${rcRegs})`;
      if (fromRegs[4] !== cs || fromRegs[1] !== cr3) return 'probe registers did not take the values written';
      for (let k = 0; k < 5; k++) if (fromEnv[k] !== fromRegs[k]) return `env and uc_reg_read disagree on register ${k} (0x${fromEnv[k]!.toString(16)} vs 0x${fromRegs[k]!.toString(16)})`;
    }
    return layout;
  } finally {
    e.close();
  }
}
