/**
 * The native TLB fill (machine/cpu/native/tlbfill.c): Unicorn's TLB-fill hook answered in C for
 * refills that change nothing (A/D bits already set, permissions granted, host RAM), without
 * crossing into JavaScript; everything else (faults, EPT violations, A/D updates, code pages,
 * MWAIT-watched pages, MMIO, bad RAM) still goes to X86Cpu.tlbFill, the reference.
 *
 * One struct per host engine, shared with C. Before every slice the bound vCPU's EPT pointer is
 * written into it (prepare), since the engine runs whichever context is scheduled.
 * FIRMAMENT_NATIVE_TLB=0 sends every fill to TypeScript (to compare, or to rule the C path out).
 */
import koffi from 'koffi';
import type { LibraryHandle } from 'koffi';
import { loadUnicorn } from './unicorn/binding.js';
import { NATIVE_HELPER } from './unicorn/locate.js';
import { MAX_PHYS_ADDR_BITS } from './x86/cpuid.js';
import type { PhysicalMemory } from '../memory/physical-memory.js';
import type { UnicornEngine } from './unicorn/engine.js';

/** Offsets in fm_tlb (tlbfill.c); keep in sync. */
const TLB = { eptp: 0, lowTop: 8, ramSize: 16, fast: 24, slow: 32, enabled: 40, maxPhys: 44, codeMap: 64, size: 72 } as const;
const ABI = 2;

interface TlbLib {
  install: (...args: unknown[]) => unknown;
  attachRam: (...args: unknown[]) => unknown;
  attachCodeMap: (...args: unknown[]) => unknown;
  walk: (...args: unknown[]) => unknown;
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
    };
  } catch {
    lib = null; // an older helper without tlbfill.c
  }
  return lib;
}

export function nativeTlbWanted(env: NodeJS.ProcessEnv = process.env): boolean {
  return env['FIRMAMENT_NATIVE_TLB'] !== '0';
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
    if (this.installed) l.attachCodeMap(this.buffer, this.codeMap);
    return this.installed;
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
