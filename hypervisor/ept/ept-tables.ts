/**
 * Per-VM EPT paging structures, stored in host RAM in the Intel EPT entry
 * format, in frames from the HostFrameAllocator. The tables in RAM are the
 * only copy: every query reads them back, and the CPU layer walks them with
 * eptWalk(). After any change the generation counter is bumped (the INVEPT of
 * this emulator): the CPU layer drops its cached guest translations when the
 * generation it filled them under is no longer current.
 */
import type { PhysicalReader } from '../../machine/cpu/x86/paging.js';
import { checkVersion, stateBoolean, stateNumber, stateNumbers, StateError, type Snapshottable, type StateRecord } from '../../machine/state.js';
import { FRAME_SIZE, type HostFrameAllocator } from '../memory/frame-allocator.js';
import {
  decodeEptEntry,
  EPT_ACCESSED,
  EPT_ADDR_MASK,
  EPT_DEFAULT_MAX_PHYS_ADDR_BITS,
  EPT_DIRTY,
  EPT_GPA_BITS,
  EPT_IGNORE_PAT,
  EPT_INVALID_MEMTYPES,
  EPT_MEMTYPE,
  EPT_MEMTYPE_MASK,
  EPT_MEMTYPE_SHIFT,
  EPT_PAGE_SIZE,
  EPT_R,
  EPT_RWX,
  EPT_W,
  EPT_X,
  makeEptp,
  type EptLevelName,
  type EptPerms,
} from './ept-walk.js';

export const EPT_4K = 4096;
export const EPT_2M = 2 * 1024 * 1024;
export const EPT_1G = 1024 * 1024 * 1024;
export const EPT_GPA_LIMIT = 2 ** EPT_GPA_BITS;

export class EptError extends Error {
  override readonly name = 'EptError';
}

export interface EptMapOptions extends EptPerms {
  /** Leaf memory type: WB (6, default) for RAM, UC (0) for MMIO; 2, 3 and 7 are rejected. */
  memType?: number;
  /** Leaf ignore-PAT bit (6). Default false. */
  ignorePat?: boolean;
  /** Use 2 MiB pages wherever GPA, HPA and the remaining length allow. Default false. */
  largePages?: boolean;
}

export interface EptMapping {
  /** Guest-physical base of the page (for lookup(): of the page containing the address). */
  gpa: number;
  /** Host-physical base of the page. */
  hpa: number;
  size: number;
  level: EptLevelName;
  perms: EptPerms;
  memType: number;
  ignorePat: boolean;
  accessed: boolean;
  dirty: boolean;
  entryAddr: number;
  entry: bigint;
}

/** A run of consecutive pages with contiguous HPAs and identical attributes (for display). */
export interface EptRange {
  gpa: number;
  hpa: number;
  length: number;
  perms: EptPerms;
  memType: number;
  ignorePat: boolean;
}

export interface EptDirtyPage {
  gpa: number;
  size: number;
}

export interface EptTablesOptions {
  /** Allocator owner tag for table frames, e.g. 'vm1:ept'. */
  owner: string;
  /** Enable EPT accessed/dirty flags (EPTP bit 6). Default true. */
  accessedDirty?: boolean;
  /** Host MAXPHYADDR; default 40. */
  maxPhysAddrBits?: number;
  snapshotId?: string;
}

interface Level {
  name: EptLevelName;
  shift: number;
  size: number;
}

/** Index 0 = PML4 ... 3 = PT. */
const LEVELS: readonly Level[] = [
  { name: 'EPT PML4', shift: 39, size: 2 ** 39 },
  { name: 'EPT PDPT', shift: 30, size: EPT_1G },
  { name: 'EPT PD', shift: 21, size: EPT_2M },
  { name: 'EPT PT', shift: 12, size: EPT_4K },
];

interface Leaf {
  gpa: number;
  size: number;
  levelIdx: number;
  entryAddr: number;
  entry: bigint;
}

const hex = (n: number | bigint): string => `0x${n.toString(16)}`;
const ENTRIES = 512;
const RESTORING: unique symbol = Symbol('restoring');

function isLeaf(levelIdx: number, e: bigint): boolean {
  return levelIdx === 3 || (levelIdx > 0 && (e & EPT_PAGE_SIZE) !== 0n);
}

function present(e: bigint): boolean {
  return (e & EPT_RWX) !== 0n;
}

function permBits(p: EptPerms): bigint {
  return (p.r ? EPT_R : 0n) | (p.w ? EPT_W : 0n) | (p.x ? EPT_X : 0n);
}

export class EptTables implements Snapshottable {
  readonly snapshotId: string;
  readonly stateVersion = 1;
  readonly owner: string;
  readonly accessedDirty: boolean;
  readonly maxPhysAddrBits: number;
  private pml4: number;
  private readonly tables = new Set<number>();
  private gen = 0;
  private destroyed = false;
  private readonly listeners = new Set<(generation: number) => void>();

  /** Allocates and zeroes the PML4 frame (owner tag options.owner). */
  constructor(
    private readonly mem: PhysicalReader,
    private readonly allocator: HostFrameAllocator,
    options: EptTablesOptions,
    restoring?: typeof RESTORING,
  ) {
    this.owner = options.owner;
    this.accessedDirty = options.accessedDirty ?? true;
    this.maxPhysAddrBits = options.maxPhysAddrBits ?? EPT_DEFAULT_MAX_PHYS_ADDR_BITS;
    this.snapshotId = options.snapshotId ?? `ept:${options.owner}`;
    this.pml4 = restoring === RESTORING ? -1 : this.newTable();
  }

  /**
   * Rebuild tables from a snapshot without allocating (a fresh constructor
   * would take and zero a frame, possibly one the restored RAM uses). Restore
   * RAM and the allocator first.
   */
  static restore(mem: PhysicalReader, allocator: HostFrameAllocator, options: EptTablesOptions, state: StateRecord): EptTables {
    const t = new EptTables(mem, allocator, options, RESTORING);
    t.restoreState(state);
    return t;
  }

  /** Host-physical address of the PML4 table. */
  get pml4Address(): number {
    return this.pml4;
  }

  /** EPTP: PML4 HPA | (4-level walk: 3) << 3 | WB (6) | A/D enable (bit 6, unless disabled). */
  eptp(): bigint {
    return makeEptp(this.pml4, { memType: EPT_MEMTYPE.WB, accessedDirty: this.accessedDirty });
  }

  /** Host frames holding the tables, lowest first (PML4 included). */
  tableFrames(): number[] {
    return [...this.tables].sort((a, b) => a - b);
  }

  // ---- invalidation ----

  /** Bumped on every change to the tables (map, unmap, protect, split, dirty clear, invalidate()). */
  get generation(): number {
    return this.gen;
  }

  /** INVEPT (single context): call after editing entries directly in RAM. */
  invalidate(): number {
    this.gen++;
    for (const l of [...this.listeners]) l(this.gen);
    return this.gen;
  }

  /** Called with the new generation on every invalidation; returns an unsubscribe function. */
  onInvalidate(listener: (generation: number) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  // ---- mapping ----

  /** Map [gpa, gpa+length) to [hpa, hpa+length). 4 KiB-aligned; must not overlap an existing mapping. */
  map(gpa: number, hpa: number, length: number, options: EptMapOptions): void {
    this.alive();
    const what = `map(${hex(gpa)}, ${hex(hpa)}, ${hex(length)})`;
    this.checkRange(what, gpa, length);
    if (!Number.isSafeInteger(hpa) || hpa < 0 || hpa % EPT_4K !== 0) throw new EptError(`${what}: host-physical address ${hex(hpa)} is not 4 KiB aligned`);
    if (hpa + length > 2 ** this.maxPhysAddrBits) throw new EptError(`${what}: host range ends at ${hex(hpa + length)}, beyond the ${this.maxPhysAddrBits}-bit host physical address space`);
    this.checkPerms(what, options);
    const memType = options.memType ?? EPT_MEMTYPE.WB;
    if (!Number.isInteger(memType) || memType < 0 || memType > 7 || EPT_INVALID_MEMTYPES.includes(memType)) {
      throw new EptError(`${what}: memory type ${memType} is invalid (use UC 0, WC 1, WT 4, WP 5 or WB 6)`);
    }
    const existing = this.leaves(gpa, gpa + length).next();
    if (!existing.done) {
      const l = existing.value;
      throw new EptError(`${what}: overlaps the existing mapping GPA ${hex(l.gpa)}-${hex(l.gpa + l.size - 1)} -> HPA ${hex(Number(l.entry & EPT_ADDR_MASK))}`);
    }
    const attrs = permBits(options) | (BigInt(memType) << EPT_MEMTYPE_SHIFT) | (options.ignorePat ? EPT_IGNORE_PAT : 0n);
    let done = 0;
    try {
      while (done < length) {
        const g = gpa + done;
        const h = hpa + done;
        const large = options.largePages === true && g % EPT_2M === 0 && h % EPT_2M === 0 && length - done >= EPT_2M;
        const levelIdx = large ? 2 : 3;
        const table = this.tableFor(g, levelIdx);
        const idx = this.index(g, levelIdx);
        const entryAddr = table + idx * 8;
        const old = this.mem.readU64(entryAddr);
        if (present(old)) {
          // Only an empty subtable can be here (overlap was checked): drop it.
          this.freeSubtree(old, levelIdx);
        }
        this.mem.writeU64(entryAddr, BigInt(h) | attrs | (large ? EPT_PAGE_SIZE : 0n));
        done += large ? EPT_2M : EPT_4K;
      }
    } catch (err) {
      if (done > 0) this.clearRange(gpa, gpa + done);
      this.invalidate();
      throw err;
    }
    this.invalidate();
  }

  /** Remove every mapping in [gpa, gpa+length), splitting large pages at the edges. Returns the bytes unmapped. */
  unmap(gpa: number, length: number): number {
    this.alive();
    this.checkRange(`unmap(${hex(gpa)}, ${hex(length)})`, gpa, length);
    this.splitToFit(gpa, gpa + length);
    const n = this.clearRange(gpa, gpa + length);
    this.invalidate();
    return n;
  }

  /** Change R/W/X of [gpa, gpa+length), which must be fully mapped; large pages straddling the edges are split. */
  protect(gpa: number, length: number, perms: EptPerms): void {
    this.alive();
    const what = `protect(${hex(gpa)}, ${hex(length)})`;
    this.checkRange(what, gpa, length);
    this.checkPerms(what, perms);
    const hole = this.firstHole(gpa, gpa + length);
    if (hole !== null) throw new EptError(`${what}: guest-physical ${hex(hole)} is not mapped`);
    this.splitToFit(gpa, gpa + length);
    for (const l of [...this.leaves(gpa, gpa + length)]) {
      this.mem.writeU64(l.entryAddr, (l.entry & ~EPT_RWX) | permBits(perms));
    }
    this.invalidate();
  }

  /** The page mapping `gpa` (hpa is the page base; add gpa - mapping.gpa for the byte), or null. No A/D side effects. */
  lookup(gpa: number): EptMapping | null {
    this.alive();
    if (!Number.isSafeInteger(gpa) || gpa < 0 || gpa >= EPT_GPA_LIMIT) return null;
    const r = this.leaves(gpa, gpa + 1).next();
    return r.done ? null : this.toMapping(r.value);
  }

  /** Every leaf overlapping [gpa, gpa+length) (default: everything), lowest GPA first. */
  *mappings(gpa = 0, length = EPT_GPA_LIMIT - gpa): Generator<EptMapping> {
    this.alive();
    for (const l of this.leaves(gpa, gpa + length)) yield this.toMapping(l);
  }

  /** mappings() coalesced into runs with contiguous HPAs and identical permissions and memory type. */
  ranges(gpa = 0, length = EPT_GPA_LIMIT - gpa): EptRange[] {
    const out: EptRange[] = [];
    for (const m of this.mappings(gpa, length)) {
      const last = out[out.length - 1];
      if (
        last &&
        last.gpa + last.length === m.gpa &&
        last.hpa + last.length === m.hpa &&
        last.memType === m.memType &&
        last.ignorePat === m.ignorePat &&
        last.perms.r === m.perms.r &&
        last.perms.w === m.perms.w &&
        last.perms.x === m.perms.x
      ) {
        last.length += m.size;
      } else {
        out.push({ gpa: m.gpa, hpa: m.hpa, length: m.size, perms: { ...m.perms }, memType: m.memType, ignorePat: m.ignorePat });
      }
    }
    return out;
  }

  // ---- dirty tracking ----

  /**
   * Pages whose D flag is set among the leaves overlapping [gpa, gpa+length),
   * lowest first; a large page is reported (and cleared) whole. With
   * `clear` (default true) the D flags are cleared and the generation bumped
   * so the CPU sets them again on the next write.
   */
  collectDirty(gpa = 0, length = EPT_GPA_LIMIT - gpa, options: { clear?: boolean } = {}): EptDirtyPage[] {
    this.alive();
    const clear = options.clear ?? true;
    const out: EptDirtyPage[] = [];
    for (const l of [...this.leaves(gpa, gpa + length)]) {
      if ((l.entry & EPT_DIRTY) === 0n) continue;
      out.push({ gpa: l.gpa, size: l.size });
      if (clear) this.mem.writeU64(l.entryAddr, l.entry & ~EPT_DIRTY);
    }
    if (clear && out.length > 0) this.invalidate();
    return out;
  }

  /** Clear D flags in the leaves overlapping the range; returns how many were set. */
  clearDirty(gpa = 0, length = EPT_GPA_LIMIT - gpa): number {
    return this.collectDirty(gpa, length, { clear: true }).length;
  }

  /** Clear A flags in every entry (all levels) overlapping the range; returns how many leaves had A set. */
  clearAccessed(gpa = 0, length = EPT_GPA_LIMIT - gpa): number {
    this.alive();
    let n = 0;
    const walk = (table: number, levelIdx: number, base: number): void => {
      const lv = LEVELS[levelIdx]!;
      const [i0, i1] = this.indexSpan(base, lv, gpa, gpa + length);
      for (let i = i0; i < i1; i++) {
        const addr = table + i * 8;
        const e = this.mem.readU64(addr);
        if (!present(e)) continue;
        if ((e & EPT_ACCESSED) !== 0n) this.mem.writeU64(addr, e & ~EPT_ACCESSED);
        if (isLeaf(levelIdx, e)) {
          if ((e & EPT_ACCESSED) !== 0n) n++;
        } else walk(Number(e & EPT_ADDR_MASK), levelIdx + 1, base + i * lv.size);
      }
    };
    walk(this.pml4, 0, 0);
    this.invalidate();
    return n;
  }

  // ---- teardown ----

  /** Unmap everything and return every table frame (PML4 included) to the allocator. */
  destroy(): void {
    this.alive();
    for (const f of this.tableFrames()) this.allocator.free(f);
    this.tables.clear();
    this.destroyed = true;
    this.invalidate();
  }

  // ---- snapshot ----

  saveState(): StateRecord {
    return {
      version: this.stateVersion,
      owner: this.owner,
      pml4: this.pml4,
      tables: this.tableFrames(),
      generation: this.gen,
      accessedDirty: this.accessedDirty,
      destroyed: this.destroyed,
    };
  }

  /**
   * Adopt the saved table frames. The tables themselves are in RAM (restored
   * with it); the allocator must already be restored, and must show every
   * table frame as owned by this.owner.
   */
  restoreState(state: StateRecord): void {
    const id = this.snapshotId;
    checkVersion(state, this.stateVersion, id);
    const owner = state['owner'];
    if (owner !== this.owner) throw new StateError(id, 'owner', `expected '${this.owner}', got ${JSON.stringify(owner ?? null)}`);
    const accessedDirty = stateBoolean(state, 'accessedDirty', id);
    if (accessedDirty !== this.accessedDirty) throw new StateError(id, 'accessedDirty', `saved ${accessedDirty}, these tables were built with ${this.accessedDirty}`);
    const destroyed = stateBoolean(state, 'destroyed', id);
    const generation = stateNumber(state, 'generation', id);
    if (!Number.isSafeInteger(generation) || generation < 0) throw new StateError(id, 'generation', `expected non-negative integer, got ${generation}`);
    const tables = stateNumbers(state, 'tables', id);
    tables.forEach((t, i) => {
      if (!Number.isSafeInteger(t) || t < 0 || t % FRAME_SIZE !== 0) throw new StateError(id, `tables[${i}]`, `${t} is not a 4 KiB-aligned address`);
      const o = this.allocator.ownerOf(t);
      if (o !== this.owner) throw new StateError(id, `tables[${i}]`, `frame ${hex(t)} is ${o === null ? 'not allocated' : `owned by '${o}'`} in the allocator, expected '${this.owner}'`);
    });
    const pml4 = stateNumber(state, 'pml4', id);
    if (!destroyed && !tables.includes(pml4)) throw new StateError(id, 'pml4', `${hex(pml4)} is not one of the saved table frames`);
    this.pml4 = pml4;
    this.tables.clear();
    for (const t of tables) this.tables.add(t);
    this.destroyed = destroyed;
    this.gen = generation;
    this.invalidate();
  }

  // ---- internals ----

  private alive(): void {
    if (this.destroyed) throw new EptError(`EPT tables '${this.owner}' were destroyed`);
  }

  private checkRange(what: string, gpa: number, length: number): void {
    if (!Number.isSafeInteger(gpa) || gpa < 0 || gpa % EPT_4K !== 0) throw new EptError(`${what}: guest-physical address ${hex(gpa)} is not 4 KiB aligned`);
    if (!Number.isSafeInteger(length) || length <= 0 || length % EPT_4K !== 0) throw new EptError(`${what}: length ${hex(length)} is not a positive multiple of 4 KiB`);
    if (gpa + length > EPT_GPA_LIMIT) throw new EptError(`${what}: range ends at ${hex(gpa + length)}, beyond the 48-bit guest-physical space of a 4-level EPT`);
  }

  private checkPerms(what: string, p: EptPerms): void {
    if (p.w && !p.r) throw new EptError(`${what}: write without read (W=1, R=0) is an EPT misconfiguration`);
    if (!p.r && !p.w && !p.x) throw new EptError(`${what}: no permissions would make the entry not present; use unmap`);
  }

  private newTable(): number {
    const [f] = this.allocator.allocate(1, { owner: this.owner });
    this.tables.add(f!);
    return f!;
  }

  private freeTable(t: number): void {
    this.tables.delete(t);
    this.allocator.free(t);
  }

  private index(gpa: number, levelIdx: number): number {
    return Math.floor(gpa / LEVELS[levelIdx]!.size) % ENTRIES;
  }

  /** [first, last+1) entry indexes of a table at `base` overlapping [lo, hi). */
  private indexSpan(base: number, lv: Level, lo: number, hi: number): [number, number] {
    const i0 = Math.max(0, Math.floor((lo - base) / lv.size));
    const i1 = Math.min(ENTRIES, Math.ceil((hi - base) / lv.size));
    return [i0, i1];
  }

  /** The table at `levelIdx` covering `gpa`, creating intermediate tables. Fails on a large page in the way. */
  private tableFor(gpa: number, levelIdx: number): number {
    let table = this.pml4;
    for (let i = 0; i < levelIdx; i++) {
      const addr = table + this.index(gpa, i) * 8;
      const e = this.mem.readU64(addr);
      if (!present(e)) {
        const t = this.newTable();
        this.mem.writeU64(addr, BigInt(t) | EPT_RWX);
        table = t;
      } else if (isLeaf(i, e)) {
        throw new EptError(`internal: ${LEVELS[i]!.name} entry for ${hex(gpa)} is a large page`);
      } else table = Number(e & EPT_ADDR_MASK);
    }
    return table;
  }

  /** Leaves overlapping [lo, hi), ascending. */
  private *leaves(lo: number, hi: number, table = this.pml4, levelIdx = 0, base = 0): Generator<Leaf> {
    const lv = LEVELS[levelIdx]!;
    const [i0, i1] = this.indexSpan(base, lv, lo, hi);
    for (let i = i0; i < i1; i++) {
      const entryAddr = table + i * 8;
      const e = this.mem.readU64(entryAddr);
      if (!present(e)) continue;
      const g = base + i * lv.size;
      if (isLeaf(levelIdx, e)) yield { gpa: g, size: lv.size, levelIdx, entryAddr, entry: e };
      else yield* this.leaves(lo, hi, Number(e & EPT_ADDR_MASK), levelIdx + 1, g);
    }
  }

  private toMapping(l: Leaf): EptMapping {
    const f = decodeEptEntry(l.entry);
    return {
      gpa: l.gpa,
      hpa: Number(l.entry & EPT_ADDR_MASK & ~BigInt(l.size - 1)),
      size: l.size,
      level: LEVELS[l.levelIdx]!.name,
      perms: { r: f.R, w: f.W, x: f.X },
      memType: f.memType,
      ignorePat: f.ignorePAT,
      accessed: f.A,
      dirty: f.D,
      entryAddr: l.entryAddr,
      entry: l.entry,
    };
  }

  /** First unmapped 4 KiB page in [lo, hi), or null. */
  private firstHole(lo: number, hi: number): number | null {
    let cur = lo;
    for (const l of this.leaves(lo, hi)) {
      if (l.gpa > cur) return cur;
      cur = Math.max(cur, l.gpa + l.size);
      if (cur >= hi) return null;
    }
    return cur < hi ? cur : null;
  }

  /** Split large leaves that straddle lo or hi until every leaf is inside or outside [lo, hi). */
  private splitToFit(lo: number, hi: number): void {
    for (const b of [lo, hi]) {
      if (b >= EPT_GPA_LIMIT) continue;
      for (;;) {
        const r = this.leaves(b, b + 1).next();
        if (r.done || r.value.gpa === b) break;
        this.split(r.value);
      }
    }
  }

  /** Replace a 1 GiB / 2 MiB leaf by a table of 512 next-size leaves with the same attributes and A/D. */
  private split(l: Leaf): void {
    const child = LEVELS[l.levelIdx + 1]!;
    const t = this.newTable();
    const base = l.entry & EPT_ADDR_MASK & ~BigInt(l.size - 1);
    const keep = l.entry & (EPT_RWX | EPT_MEMTYPE_MASK | EPT_IGNORE_PAT | EPT_ACCESSED | EPT_DIRTY);
    const ps = l.levelIdx + 1 < 3 ? EPT_PAGE_SIZE : 0n;
    for (let i = 0; i < ENTRIES; i++) this.mem.writeU64(t + i * 8, (base + BigInt(i * child.size)) | keep | ps);
    this.mem.writeU64(l.entryAddr, BigInt(t) | EPT_RWX | (l.entry & EPT_ACCESSED));
  }

  /** Clear leaves fully inside [lo, hi) and free tables left empty. Returns the bytes unmapped. */
  private clearRange(lo: number, hi: number): number {
    let bytes = 0;
    const walk = (table: number, levelIdx: number, base: number): boolean => {
      const lv = LEVELS[levelIdx]!;
      const [i0, i1] = this.indexSpan(base, lv, lo, hi);
      for (let i = i0; i < i1; i++) {
        const addr = table + i * 8;
        const e = this.mem.readU64(addr);
        if (!present(e)) continue;
        const g = base + i * lv.size;
        if (isLeaf(levelIdx, e)) {
          if (g >= lo && g + lv.size <= hi) {
            this.mem.writeU64(addr, 0n);
            bytes += lv.size;
          }
        } else {
          const child = Number(e & EPT_ADDR_MASK);
          if (walk(child, levelIdx + 1, g)) {
            this.mem.writeU64(addr, 0n);
            this.freeTable(child);
          }
        }
      }
      return this.isEmpty(table);
    };
    walk(this.pml4, 0, 0);
    return bytes;
  }

  private isEmpty(table: number): boolean {
    for (let i = 0; i < ENTRIES; i++) if (present(this.mem.readU64(table + i * 8))) return false;
    return true;
  }

  /**
   * Free the subtable tree under the non-leaf entry `e` (at levelIdx), which
   * holds no leaves (callers checked for overlap); a leaf found means a bug.
   */
  private freeSubtree(e: bigint, levelIdx: number): void {
    if (isLeaf(levelIdx, e)) throw new EptError(`internal: expected an empty subtable under a ${LEVELS[levelIdx]!.name} entry, found a leaf`);
    const t = Number(e & EPT_ADDR_MASK);
    for (let i = 0; i < ENTRIES; i++) {
      const c = this.mem.readU64(t + i * 8);
      if (present(c)) this.freeSubtree(c, levelIdx + 1);
    }
    this.freeTable(t);
  }
}
