/**
 * The EPT (extended page table) walker: guest-physical -> host-physical, in
 * the Intel EPT entry format, read from host RAM. Mirrors the guest page
 * walker in machine/cpu/x86/paging.ts (same PhysicalReader, same step shape)
 * so the CLI `translate` command and the TUI page-walk pane can show both.
 *
 * Semantics follow the Intel SDM, Vol. 3C, "EPT Translation Mechanism":
 * - an entry is present when any of bits 2:0 (R, W, X) is set;
 * - a present entry is *misconfigured* when W=1 and R=0, when a reserved bit
 *   is set, or (leaf) when its memory type is 2, 3 or 7; a PS bit in a PML4E
 *   is a reserved bit; misconfiguration is checked before permissions;
 * - an access is allowed when every entry used grants it (logical AND);
 *   otherwise it is an EPT *violation*, with the exit qualification the CPU
 *   would report;
 * - with EPT A/D enabled (EPTP bit 6) the walk sets the accessed flag (bit 8)
 *   in every entry used and the dirty flag (bit 9) in the leaf on a write.
 */
import type { PhysicalReader } from '../../machine/cpu/x86/paging.js';

export type EptAccess = 'read' | 'write' | 'fetch';
export type EptLevelName = 'EPT PML4' | 'EPT PDPT' | 'EPT PD' | 'EPT PT';

// ---- entry format ----

export const EPT_R = 1n << 0n;
export const EPT_W = 1n << 1n;
export const EPT_X = 1n << 2n;
export const EPT_RWX = EPT_R | EPT_W | EPT_X;
export const EPT_MEMTYPE_SHIFT = 3n;
export const EPT_MEMTYPE_MASK = 7n << EPT_MEMTYPE_SHIFT;
export const EPT_IGNORE_PAT = 1n << 6n;
export const EPT_PAGE_SIZE = 1n << 7n;
export const EPT_ACCESSED = 1n << 8n;
export const EPT_DIRTY = 1n << 9n;
/** Physical address bits 51:12. */
export const EPT_ADDR_MASK = 0x000f_ffff_ffff_f000n;

/** Memory types (leaf bits 5:3, EPTP bits 2:0). */
export const EPT_MEMTYPE = { UC: 0, WC: 1, WT: 4, WP: 5, WB: 6 } as const;
export type EptMemType = (typeof EPT_MEMTYPE)[keyof typeof EPT_MEMTYPE];
export const EPT_INVALID_MEMTYPES: readonly number[] = [2, 3, 7];

// ---- EPTP ----

export const EPTP_MEMTYPE_MASK = 7n;
export const EPTP_WALK_LENGTH_SHIFT = 3n;
export const EPTP_WALK_LENGTH_MASK = 7n << EPTP_WALK_LENGTH_SHIFT;
/** Page-walk length minus one: 3 for a 4-level walk. */
export const EPTP_WALK_LENGTH_4 = 3n;
export const EPTP_AD_ENABLE = 1n << 6n;

/** MAXPHYADDR of the emulated CPU (CPUID 0x80000008 EAX[7:0] = 40, machine/cpu/x86/cpuid.ts). */
export const EPT_DEFAULT_MAX_PHYS_ADDR_BITS = 40;
/** A 4-level EPT translates 48-bit guest-physical addresses. */
export const EPT_GPA_BITS = 48;

/** Build an EPTP value: PML4 HPA | walk length 3 << 3 | memory type | A/D enable (bit 6). */
export function makeEptp(pml4Hpa: number | bigint, opts: { memType?: 0 | 6; accessedDirty?: boolean } = {}): bigint {
  const base = BigInt(pml4Hpa);
  if ((base & 0xfffn) !== 0n) throw new RangeError(`EPT PML4 address 0x${base.toString(16)} is not 4 KiB aligned`);
  return base | (EPTP_WALK_LENGTH_4 << EPTP_WALK_LENGTH_SHIFT) | BigInt(opts.memType ?? EPT_MEMTYPE.WB) | (opts.accessedDirty ?? true ? EPTP_AD_ENABLE : 0n);
}

export interface EptpFields {
  pml4: bigint;
  memType: number;
  walkLength: number;
  accessedDirty: boolean;
}

export function decodeEptp(eptp: bigint): EptpFields {
  return {
    pml4: eptp & EPT_ADDR_MASK,
    memType: Number(eptp & EPTP_MEMTYPE_MASK),
    walkLength: Number((eptp & EPTP_WALK_LENGTH_MASK) >> EPTP_WALK_LENGTH_SHIFT) + 1,
    accessedDirty: (eptp & EPTP_AD_ENABLE) !== 0n,
  };
}

// ---- exit qualification (Intel SDM Vol. 3C, Table "Exit Qualification for EPT Violations") ----

export const EPT_QUAL = {
  READ: 1 << 0,
  WRITE: 1 << 1,
  FETCH: 1 << 2,
  READABLE: 1 << 3,
  WRITABLE: 1 << 4,
  EXECUTABLE: 1 << 5,
  /** Guest linear address field valid. */
  GLA_VALID: 1 << 7,
  /** With GLA_VALID: 1 = access to the translated linear address, 0 = access to a guest paging-structure entry. */
  GLA_TRANSLATION: 1 << 8,
} as const;

export interface EptQualification {
  read: boolean;
  write: boolean;
  fetch: boolean;
  readable: boolean;
  writable: boolean;
  executable: boolean;
  glaValid: boolean;
  glaTranslation: boolean;
}

export function decodeEptQualification(q: number): EptQualification {
  return {
    read: (q & EPT_QUAL.READ) !== 0,
    write: (q & EPT_QUAL.WRITE) !== 0,
    fetch: (q & EPT_QUAL.FETCH) !== 0,
    readable: (q & EPT_QUAL.READABLE) !== 0,
    writable: (q & EPT_QUAL.WRITABLE) !== 0,
    executable: (q & EPT_QUAL.EXECUTABLE) !== 0,
    glaValid: (q & EPT_QUAL.GLA_VALID) !== 0,
    glaTranslation: (q & EPT_QUAL.GLA_TRANSLATION) !== 0,
  };
}

// ---- steps and results ----

export interface EptEntryFlags {
  R: boolean;
  W: boolean;
  X: boolean;
  /** Bits 5:3 (meaningful in leaves only; reserved, must be 0, in non-leaf entries). */
  memType: number;
  ignorePAT: boolean;
  PS: boolean;
  A: boolean;
  D: boolean;
}

export interface EptWalkStep {
  level: EptLevelName;
  index: number;
  /** Host-physical address of the entry. */
  entryAddr: number;
  entry: bigint;
  flags: EptEntryFlags;
}

export interface EptPerms {
  r: boolean;
  w: boolean;
  x: boolean;
}

export interface EptWalkOk {
  ok: true;
  gpa: bigint;
  hpa: bigint;
  /** Host-physical base of the page (hpa - offset). */
  pageBase: bigint;
  pageSize: number;
  /** The effective permissions: AND over all entries used. */
  perms: EptPerms;
  memType: number;
  ignorePAT: boolean;
  /** Leaf D flag after the walk. */
  dirty: boolean;
  steps: EptWalkStep[];
}

export interface EptWalkFault {
  ok: false;
  kind: 'violation' | 'misconfig';
  gpa: bigint;
  access: EptAccess;
  /** Level of the entry that failed, or 'EPTP' when the EPTP itself is invalid. */
  level: EptLevelName | 'EPTP';
  /** Index in `steps` of that entry (-1 for 'EPTP'). */
  faultLevel: number;
  reason: string;
  /** Exit qualification (violations; for misconfigurations only the access bits, the CPU reports none). */
  qualification: number;
  steps: EptWalkStep[];
}

export type EptWalkResult = EptWalkOk | EptWalkFault;

/** Which guest-linear access caused this guest-physical access (exit qualification bits 7 and 8). */
export type EptGuestLinear = 'none' | 'translation' | 'paging-structure';

export interface EptWalkOptions {
  /** Set A (and D on writes) as the CPU does, when EPTP enables EPT A/D. Off for inspection. */
  setAccessedDirty: boolean;
  /**
   * 'paging-structure': an access to a guest paging-structure entry during a
   * guest page walk. With EPT A/D enabled such accesses are treated as writes
   * (they need W, set D, and report qualification bits 0 and 1).
   * 'translation': the access to the final translated linear address.
   * Default 'none' (GLA not valid, e.g. an emulated device access).
   */
  guestLinear?: EptGuestLinear;
  /** Host MAXPHYADDR; entry address bits from here to 51 are reserved. Default 40. */
  maxPhysAddrBits?: number;
}

// ---- decoding ----

export function decodeEptEntry(e: bigint): EptEntryFlags {
  return {
    R: (e & EPT_R) !== 0n,
    W: (e & EPT_W) !== 0n,
    X: (e & EPT_X) !== 0n,
    memType: Number((e & EPT_MEMTYPE_MASK) >> EPT_MEMTYPE_SHIFT),
    ignorePAT: (e & EPT_IGNORE_PAT) !== 0n,
    PS: (e & EPT_PAGE_SIZE) !== 0n,
    A: (e & EPT_ACCESSED) !== 0n,
    D: (e & EPT_DIRTY) !== 0n,
  };
}

/** One-line rendering for logs and the TUI, e.g. "R W - WB IPAT PS A D". */
export function formatEptFlags(f: EptEntryFlags): string {
  const mt = ['UC', 'WC', 'mt2', 'mt3', 'WT', 'WP', 'WB', 'mt7'][f.memType]!;
  return [f.R ? 'R' : '-', f.W ? 'W' : '-', f.X ? 'X' : '-', mt, f.ignorePAT ? 'IPAT' : '', f.PS ? 'PS' : '', f.A ? 'A' : '', f.D ? 'D' : ''].filter((s) => s !== '').join(' ');
}

const LEVELS: readonly { name: EptLevelName; shift: number; leafAllowed: boolean }[] = [
  { name: 'EPT PML4', shift: 39, leafAllowed: false },
  { name: 'EPT PDPT', shift: 30, leafAllowed: true },
  { name: 'EPT PD', shift: 21, leafAllowed: true },
  { name: 'EPT PT', shift: 12, leafAllowed: true },
];

const bitRange = (lo: number, hi: number): bigint => ((1n << BigInt(hi - lo + 1)) - 1n) << BigInt(lo);
const hex = (n: bigint | number): string => `0x${n.toString(16)}`;

const reservedCache = new Map<number, bigint>();

/** Reserved bits of a present entry, by level and leaf-ness (bits 62:52 are ignored, 63 is suppress-#VE). */
function reservedMask(levelIdx: number, leaf: boolean, maxPhys: number): bigint {
  const key = maxPhys * 16 + levelIdx * 2 + (leaf ? 1 : 0);
  let m = reservedCache.get(key);
  if (m === undefined) {
    m = computeReservedMask(levelIdx, leaf, maxPhys);
    reservedCache.set(key, m);
  }
  return m;
}

function computeReservedMask(levelIdx: number, leaf: boolean, maxPhys: number): bigint {
  if (!Number.isInteger(maxPhys) || maxPhys < 32 || maxPhys > 52) throw new RangeError(`maxPhysAddrBits ${maxPhys} must be an integer in 32..52`);
  let m = maxPhys < 52 ? bitRange(maxPhys, 51) : 0n;
  if (!leaf) {
    // Non-leaf entries: bits 7:3 reserved (bit 7 in a PDPTE/PDE is PS, which is 0 here by definition).
    m |= bitRange(3, 7);
  } else if (levelIdx === 1) {
    m |= bitRange(12, 29); // 1 GiB page: address bits 29:12 reserved
  } else if (levelIdx === 2) {
    m |= bitRange(12, 20); // 2 MiB page: address bits 20:12 reserved
  }
  return m;
}

function accessBits(access: EptAccess, guestLinear: EptGuestLinear, adAsWrite: boolean): number {
  let q = access === 'read' ? EPT_QUAL.READ : access === 'write' ? EPT_QUAL.WRITE : EPT_QUAL.FETCH;
  if (adAsWrite) q = EPT_QUAL.READ | EPT_QUAL.WRITE;
  if (guestLinear !== 'none') q |= EPT_QUAL.GLA_VALID;
  if (guestLinear === 'translation') q |= EPT_QUAL.GLA_TRANSLATION;
  return q;
}

/**
 * Translate `gpa` through the EPT rooted at `eptp`, reading entries from host
 * memory `mem`. Never throws for guest-controlled input; returns a fault.
 */
export function eptWalk(mem: PhysicalReader, eptp: bigint, gpa: bigint | number, access: EptAccess, opt: EptWalkOptions): EptWalkResult {
  const g = BigInt(gpa);
  const maxPhys = opt.maxPhysAddrBits ?? EPT_DEFAULT_MAX_PHYS_ADDR_BITS;
  const guestLinear = opt.guestLinear ?? 'none';
  const ad = (eptp & EPTP_AD_ENABLE) !== 0n;
  // With EPT A/D, guest paging-structure accesses are writes for EPT purposes.
  const adAsWrite = ad && guestLinear === 'paging-structure';
  const eff: EptAccess = adAsWrite ? 'write' : access;
  const steps: EptWalkStep[] = [];
  const baseQual = accessBits(access, guestLinear, adAsWrite);
  let r = true;
  let w = true;
  let x = true;
  const permBits = (): number => (r ? EPT_QUAL.READABLE : 0) | (w ? EPT_QUAL.WRITABLE : 0) | (x ? EPT_QUAL.EXECUTABLE : 0);
  const fail = (kind: EptWalkFault['kind'], idx: number, reason: string): EptWalkFault => ({
    ok: false,
    kind,
    gpa: g,
    access,
    level: idx < 0 ? 'EPTP' : LEVELS[idx]!.name,
    faultLevel: idx,
    reason,
    qualification: kind === 'violation' ? baseQual | permBits() : baseQual,
    steps,
  });

  // EPTP checks (the CPU refuses VM entry with such an EPTP; report it as a misconfiguration here).
  const eptpMt = Number(eptp & EPTP_MEMTYPE_MASK);
  if (eptpMt !== EPT_MEMTYPE.UC && eptpMt !== EPT_MEMTYPE.WB) return fail('misconfig', -1, `EPTP memory type ${eptpMt} is not UC (0) or WB (6)`);
  const walkLen = (eptp & EPTP_WALK_LENGTH_MASK) >> EPTP_WALK_LENGTH_SHIFT;
  if (walkLen !== EPTP_WALK_LENGTH_4) return fail('misconfig', -1, `EPTP page-walk length ${walkLen + 1n} is not 4`);
  const eptpReserved = bitRange(7, 11) | bitRange(maxPhys, 63);
  if ((eptp & eptpReserved) !== 0n) return fail('misconfig', -1, `EPTP ${hex(eptp)} has reserved bits ${hex(eptp & eptpReserved)} set`);
  if (g < 0n || g >> BigInt(EPT_GPA_BITS) !== 0n) {
    r = w = x = false;
    return fail('violation', -1, `guest-physical address ${hex(g)} is beyond the ${EPT_GPA_BITS} bits a 4-level EPT translates`);
  }

  let table = eptp & EPT_ADDR_MASK;
  for (let i = 0; i < LEVELS.length; i++) {
    const lv = LEVELS[i]!;
    const index = Number((g >> BigInt(lv.shift)) & 0x1ffn);
    const entryAddr = Number(table) + index * 8;
    const entry = mem.readU64(entryAddr);
    const flags = decodeEptEntry(entry);
    steps.push({ level: lv.name, index, entryAddr, entry, flags });
    r &&= flags.R;
    w &&= flags.W;
    x &&= flags.X;
    if ((entry & EPT_RWX) === 0n) return fail('violation', i, `${lv.name} entry not present`);
    if (flags.W && !flags.R) return fail('misconfig', i, `${lv.name} entry is writable but not readable (W=1, R=0)`);
    if (i === 0 && flags.PS) return fail('misconfig', i, `${lv.name} entry has the page-size bit set (reserved in a PML4E)`);
    const leaf = i === LEVELS.length - 1 || (lv.leafAllowed && flags.PS);
    const reserved = entry & reservedMask(i, leaf, maxPhys);
    if (reserved !== 0n) return fail('misconfig', i, `${lv.name} entry has reserved bits ${hex(reserved)} set`);
    if (!leaf) {
      table = entry & EPT_ADDR_MASK;
      continue;
    }
    if (EPT_INVALID_MEMTYPES.includes(flags.memType)) return fail('misconfig', i, `${lv.name} entry has invalid memory type ${flags.memType}`);
    const allowed = eff === 'read' ? r : eff === 'write' ? w : x;
    if (!allowed) {
      const what = eff === 'read' ? 'read of a non-readable' : eff === 'write' ? (adAsWrite ? 'guest paging-structure access (a write with EPT A/D) to a non-writable' : 'write to a non-writable') : 'instruction fetch from a non-executable';
      return fail('violation', i, `${what} guest-physical page`);
    }
    const pageSize = 2 ** lv.shift;
    if (opt.setAccessedDirty && ad) {
      for (let k = 0; k < steps.length; k++) {
        const s = steps[k]!;
        let v = s.entry | EPT_ACCESSED;
        if (k === steps.length - 1 && eff === 'write') v |= EPT_DIRTY;
        if (v !== s.entry) {
          mem.writeU64(s.entryAddr, v);
          s.entry = v;
          s.flags = decodeEptEntry(v);
        }
      }
    }
    const last = steps[steps.length - 1]!;
    const pageBase = last.entry & EPT_ADDR_MASK & ~BigInt(pageSize - 1);
    const hpa = pageBase + (g & BigInt(pageSize - 1));
    return {
      ok: true,
      gpa: g,
      hpa,
      pageBase,
      pageSize,
      perms: { r, w, x },
      memType: last.flags.memType,
      ignorePAT: last.flags.ignorePAT,
      dirty: last.flags.D,
      steps,
    };
  }
  return fail('violation', LEVELS.length - 1, 'walk ended without a leaf');
}
