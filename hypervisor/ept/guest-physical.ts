/**
 * A guest's physical address space seen through its EPT: every access is
 * translated by eptWalk() over host RAM, so the guest page walker
 * (machine/cpu/x86/paging.ts walk()) composed with a GuestPhysicalMemory
 * performs the full nested GVA -> GPA -> HPA translation, EPT faults included.
 */
import { decodeEntry, pagingFormat, walk, type Access, type PagingControl, type PhysicalReader, type WalkResult, type WalkStep } from '../../machine/cpu/x86/paging.js';
import { EFER } from '../../machine/cpu/x86/registers.js';
import { eptWalk, type EptAccess, type EptGuestLinear, type EptWalkFault, type EptWalkOk, type EptWalkResult } from './ept-walk.js';

/** Host memory: the walker's PhysicalReader; byte access (PhysicalMemory.read/write) for data accesses. */
export type HostPhysicalMemory = PhysicalReader & {
  read?(addr: number, length: number): Uint8Array;
  write?(addr: number, data: Uint8Array): void;
  /** CPU store without DMA/code-invalidation listeners (PhysicalMemory.writeBytes). */
  writeBytes?(addr: number, data: Uint8Array): void;
};

/** A fixed EPTP, or the live one of an EptTables (re-read on every access). */
export type EptpSource = bigint | { eptp(): bigint };

const hex = (n: number | bigint): string => `0x${n.toString(16)}`;

/**
 * An EPT violation or misconfiguration hit by a guest-physical access. `walk`
 * is the failed EPT walk (kind, level, reason, exit qualification, steps); the
 * CPU layer turns it into a VM exit.
 */
export class EptViolation extends Error {
  override readonly name = 'EptViolation';
  readonly kind: 'violation' | 'misconfig';
  readonly gpa: bigint;
  readonly qualification: number;

  constructor(readonly walk: EptWalkFault) {
    super(`EPT ${walk.kind === 'misconfig' ? 'misconfiguration' : 'violation'} at guest-physical ${hex(walk.gpa)} (${walk.access}, ${walk.level}): ${walk.reason}; exit qualification ${hex(walk.qualification)}`);
    this.kind = walk.kind;
    this.gpa = walk.gpa;
    this.qualification = walk.qualification;
  }
}

export interface EptAccessRecord {
  gpa: bigint;
  /** The operation as issued (the EPT may treat a paging-structure read as a write). */
  op: 'read' | 'write' | 'fetch';
  size: number;
  pagingStructure: boolean;
  /** Value read or written for readU32/readU64/writeU32/writeU64; null for byte accesses and failed walks. */
  value: bigint | null;
  walk: EptWalkResult;
}

export interface GuestPhysicalMemoryOptions {
  /** Set EPT A/D flags as the CPU does (when EPTP enables them). Default true; false for inspection. */
  setAccessedDirty?: boolean;
  /**
   * readU32/readU64/writeU32/writeU64 (the PhysicalReader face) are guest
   * paging-structure accesses, as when walk() uses this object. Default true.
   */
  pagingStructureAccesses?: boolean;
  maxPhysAddrBits?: number;
  /** Observer for every translated access (the translate command and the TUI use it). */
  onAccess?: (record: EptAccessRecord) => void;
}

export class GuestPhysicalMemory implements PhysicalReader {
  private readonly setAD: boolean;
  private readonly pagingAccesses: boolean;

  constructor(
    readonly host: HostPhysicalMemory,
    private readonly eptpSource: EptpSource,
    private readonly options: GuestPhysicalMemoryOptions = {},
  ) {
    this.setAD = options.setAccessedDirty ?? true;
    this.pagingAccesses = options.pagingStructureAccesses ?? true;
  }

  get eptp(): bigint {
    return typeof this.eptpSource === 'bigint' ? this.eptpSource : this.eptpSource.eptp();
  }

  /** EPT-translate one access; throws EptViolation on a violation or misconfiguration. */
  translate(gpa: number | bigint, access: EptAccess, guestLinear: EptGuestLinear = 'none'): EptWalkOk {
    const r = eptWalk(this.host, this.eptp, gpa, access, { setAccessedDirty: this.setAD, guestLinear, maxPhysAddrBits: this.options.maxPhysAddrBits });
    if (!r.ok) throw new EptViolation(r);
    return r;
  }

  /** Byte read: always a data access (CpuMemory needs it for event delivery and instruction bytes). */
  readU8(gpa: number): number {
    const [p] = this.pieces(gpa, 1, 'read', 'none', false);
    return this.readHostByte(p!.hpa);
  }

  readU32(gpa: number): number {
    return Number(this.scalarRead(gpa, 4));
  }

  readU64(gpa: number): bigint {
    return this.scalarRead(gpa, 8);
  }

  writeU32(gpa: number, value: number): void {
    this.scalarWrite(gpa, 4, BigInt(value >>> 0));
  }

  writeU64(gpa: number, value: bigint): void {
    this.scalarWrite(gpa, 8, BigInt.asUintN(64, value));
  }

  /** Data read (or instruction fetch) of `length` bytes; may cross pages. */
  read(gpa: number, length: number, access: 'read' | 'fetch' = 'read'): Uint8Array {
    const hostRead = this.host.read?.bind(this.host);
    if (!hostRead) throw new TypeError('GuestPhysicalMemory.read needs a host memory with read(addr, length)');
    const out = new Uint8Array(length);
    let done = 0;
    for (const piece of this.pieces(gpa, length, access, 'none', false)) {
      out.set(hostRead(piece.hpa, piece.length), done);
      done += piece.length;
    }
    return out;
  }

  /** Data write of `data`; may cross pages. Every page is translated before any byte is written. */
  write(gpa: number, data: Uint8Array): void {
    const hostWrite = this.host.write?.bind(this.host);
    if (!hostWrite) throw new TypeError('GuestPhysicalMemory.write needs a host memory with write(addr, data)');
    let done = 0;
    for (const piece of this.pieces(gpa, data.length, 'write', 'none', false)) {
      hostWrite(piece.hpa, data.subarray(done, done + piece.length));
      done += piece.length;
    }
  }

  /** CpuMemory face: data read (same as read()). */
  readBytes(gpa: number, length: number): Uint8Array {
    return this.read(gpa, length);
  }

  /** CpuMemory face: a store by the CPU itself (event delivery); host writeBytes, so no DMA listeners. */
  writeBytes(gpa: number, data: Uint8Array): void {
    const hostWrite = (this.host.writeBytes ?? this.host.write)?.bind(this.host);
    if (!hostWrite) throw new TypeError('GuestPhysicalMemory.writeBytes needs a host memory with writeBytes(addr, data) or write(addr, data)');
    let done = 0;
    for (const piece of this.pieces(gpa, data.length, 'write', 'none', false)) {
      hostWrite(piece.hpa, data.subarray(done, done + piece.length));
      done += piece.length;
    }
  }

  // ---- internals ----

  private get linear(): EptGuestLinear {
    return this.pagingAccesses ? 'paging-structure' : 'none';
  }

  /** Translate [gpa, gpa+length) page by page (all pages first, so a fault leaves nothing half done). */
  private pieces(gpa: number, length: number, access: EptAccess, linear: EptGuestLinear, paging: boolean, value: bigint | null = null): { hpa: number; length: number }[] {
    const out: { hpa: number; length: number }[] = [];
    let cur = gpa;
    const end = gpa + length;
    while (cur < end) {
      const n = Math.min(end - cur, 4096 - (cur % 4096));
      const r = eptWalk(this.host, this.eptp, cur, access, { setAccessedDirty: this.setAD, guestLinear: linear, maxPhysAddrBits: this.options.maxPhysAddrBits });
      this.options.onAccess?.({ gpa: BigInt(cur), op: access, size: n, pagingStructure: paging, value: r.ok ? value : null, walk: r });
      if (!r.ok) throw new EptViolation(r);
      out.push({ hpa: Number(r.hpa), length: n });
      cur += n;
    }
    return out;
  }

  private scalarRead(gpa: number, size: 4 | 8): bigint {
    const access: EptAccess = 'read';
    if (gpa % 4096 <= 4096 - size) {
      const r = eptWalk(this.host, this.eptp, gpa, access, { setAccessedDirty: this.setAD, guestLinear: this.linear, maxPhysAddrBits: this.options.maxPhysAddrBits });
      if (!r.ok) {
        this.options.onAccess?.({ gpa: BigInt(gpa), op: access, size, pagingStructure: this.pagingAccesses, value: null, walk: r });
        throw new EptViolation(r);
      }
      const hpa = Number(r.hpa);
      const v = size === 8 ? this.host.readU64(hpa) : BigInt(this.host.readU32(hpa) >>> 0);
      this.options.onAccess?.({ gpa: BigInt(gpa), op: access, size, pagingStructure: this.pagingAccesses, value: v, walk: r });
      return v;
    }
    // Straddles a page boundary: byte-assemble from both pages.
    let v = 0n;
    let shift = 0n;
    for (const p of this.pieces(gpa, size, access, this.linear, this.pagingAccesses)) {
      for (let i = 0; i < p.length; i++) {
        v |= BigInt(this.readHostByte(p.hpa + i)) << shift;
        shift += 8n;
      }
    }
    return v;
  }

  private scalarWrite(gpa: number, size: 4 | 8, value: bigint): void {
    if (gpa % 4096 <= 4096 - size) {
      const [p] = this.pieces(gpa, size, 'write', this.linear, this.pagingAccesses, value);
      if (size === 8) this.host.writeU64(p!.hpa, value);
      else this.host.writeU32(p!.hpa, Number(value));
      return;
    }
    let shift = 0n;
    for (const p of this.pieces(gpa, size, 'write', this.linear, this.pagingAccesses, value)) {
      for (let i = 0; i < p.length; i++) {
        this.writeHostByte(p.hpa + i, Number((value >> shift) & 0xffn));
        shift += 8n;
      }
    }
  }

  private readHostByte(hpa: number): number {
    const word = hpa & ~3;
    return (this.host.readU32(word) >>> (8 * (hpa - word))) & 0xff;
  }

  private writeHostByte(hpa: number, byte: number): void {
    const word = hpa & ~3;
    const sh = 8 * (hpa - word);
    const old = this.host.readU32(word) >>> 0;
    this.host.writeU32(word, ((old & ~(0xff << sh)) | (byte << sh)) >>> 0);
  }
}

/**
 * The CPU layer's second-level hook (structurally the SecondLevelTranslation
 * of machine/cpu/x86-cpu.ts): EPT-translate `gpa` for the final access of a
 * guest translation, setting A/D as the CPU does; null on a violation or
 * misconfiguration (`lastFault` then holds the failed walk for the exit).
 */
export class EptSecondLevel {
  lastFault: EptWalkFault | null = null;

  constructor(
    private readonly host: PhysicalReader,
    private readonly eptpSource: EptpSource,
    private readonly options: { setAccessedDirty?: boolean; maxPhysAddrBits?: number } = {},
  ) {}

  translate(gpa: bigint, access: EptAccess): { hpa: bigint; writable: boolean; executable: boolean; dirty: boolean; pageSize: number; walk: EptWalkOk } | null {
    const eptp = typeof this.eptpSource === 'bigint' ? this.eptpSource : this.eptpSource.eptp();
    const r = eptWalk(this.host, eptp, gpa, access, {
      setAccessedDirty: this.options.setAccessedDirty ?? true,
      guestLinear: 'translation',
      maxPhysAddrBits: this.options.maxPhysAddrBits,
    });
    if (!r.ok) {
      this.lastFault = r;
      return null;
    }
    this.lastFault = null;
    return { hpa: r.hpa, writable: r.perms.w, executable: r.perms.x, dirty: r.dirty, pageSize: r.pageSize, walk: r };
  }
}

// ---- nested translation for the translate command and the TUI ----

export interface GuestTableAccess {
  /** Guest paging level whose entry this access read or updated (null when it cannot be told). */
  guestLevel: WalkStep['level'] | null;
  /** Guest-physical address of the guest entry. */
  gpa: bigint;
  op: 'read' | 'write';
  /** Entry value read or written; null when the EPT walk failed. */
  value: bigint | null;
  /** The EPT walk of `gpa` (a write for EPT purposes when EPT A/D is on). */
  ept: EptWalkResult;
}

export type NestedStage = 'complete' | 'guest-page-fault' | 'ept-fault-in-guest-walk' | 'ept-fault-final';

export interface NestedTranslation {
  ok: boolean;
  gva: bigint;
  access: Access;
  user: boolean;
  stage: NestedStage;
  /** The guest walk (entry addresses are GPAs); null when an EPT fault aborted it. */
  guest: WalkResult | null;
  /** Guest walk steps: guest.steps, or the entries read before an EPT fault aborted the walk. */
  guestSteps: WalkStep[];
  /** Every guest paging-structure access in order, with its EPT walk. */
  tableAccesses: GuestTableAccess[];
  gpa: bigint | null;
  /** The EPT walk of the final GPA. */
  final: EptWalkResult | null;
  hpa: bigint | null;
  /** Largest page size a TLB may cache for this translation: min(guest page, EPT page). */
  pageSize: number | null;
  /** The EPT fault that stopped the translation, if any. */
  eptFault: EptWalkFault | null;
  /** One line describing the outcome. */
  reason: string;
}

export interface TranslateOptions {
  /** Set guest and EPT A/D flags as the CPU would. Default false (inspection). */
  setAccessedDirty?: boolean;
  maxPhysAddrBits?: number;
}

const GUEST_LEVELS: Record<string, WalkStep['level'][]> = {
  '4-level': ['PML4', 'PDPT', 'PD', 'PT'],
  pae: ['PDPT', 'PD', 'PT'],
  '32-bit': ['PD', 'PT'],
  none: [],
};

/**
 * GVA -> GPA -> HPA: the guest walk over guest-physical memory (each guest
 * table access EPT-walked as a paging-structure access), then the EPT walk of
 * the final GPA. Never throws for guest-controlled state.
 */
export function translateGuestVirtual(
  hostMem: PhysicalReader,
  eptp: bigint,
  guestControl: PagingControl,
  gva: bigint,
  access: Access,
  user: boolean,
  options: TranslateOptions = {},
): NestedTranslation {
  const setAD = options.setAccessedDirty ?? false;
  const records: EptAccessRecord[] = [];
  const gpm = new GuestPhysicalMemory(hostMem, eptp, {
    setAccessedDirty: setAD,
    pagingStructureAccesses: true,
    maxPhysAddrBits: options.maxPhysAddrBits,
    onAccess: (r) => records.push(r),
  });
  const base = { gva, access, user };
  const format = pagingFormat(guestControl);
  const levels = GUEST_LEVELS[format]!;
  const nxe = (guestControl.efer & EFER.NXE) !== 0n && format !== '32-bit';

  let guest: WalkResult | null = null;
  let eptFault: EptWalkFault | null = null;
  try {
    guest = walk(gpm, guestControl, gva, { access, user, setAccessedDirty: setAD });
  } catch (err) {
    if (!(err instanceof EptViolation)) throw err;
    eptFault = err.walk;
  }

  // Label the accesses: reads in walk order are the levels; A/D writes match a read's GPA.
  const readLevel: { gpa: bigint; level: WalkStep['level'] }[] = [];
  const tableAccesses: GuestTableAccess[] = records.map((r) => {
    let guestLevel: WalkStep['level'] | null = null;
    if (r.op === 'read') {
      guestLevel = levels[readLevel.length] ?? null;
      if (guestLevel) readLevel.push({ gpa: r.gpa, level: guestLevel });
    } else {
      guestLevel = [...readLevel].reverse().find((x) => x.gpa === r.gpa)?.level ?? null;
    }
    return { guestLevel, gpa: r.gpa, op: r.op === 'write' ? 'write' : 'read', value: r.value, ept: r.walk };
  });

  if (!guest) {
    // Rebuild the steps read before the fault (same index arithmetic as walk()).
    const va = format === '4-level' ? gva : gva & 0xffff_ffffn;
    const shifts: Record<WalkStep['level'], number> = format === '32-bit' ? { PML4: 0, PDPT: 0, PD: 22, PT: 12 } : { PML4: 39, PDPT: 30, PD: 21, PT: 12 };
    const bits = (lv: WalkStep['level']): number => (format === '32-bit' ? 10 : format === 'pae' && lv === 'PDPT' ? 2 : 9);
    const guestSteps: WalkStep[] = tableAccesses
      .filter((a) => a.op === 'read' && a.value !== null && a.guestLevel !== null)
      .map((a) => ({
        level: a.guestLevel!,
        index: Number((va >> BigInt(shifts[a.guestLevel!])) & ((1n << BigInt(bits(a.guestLevel!))) - 1n)),
        entryAddr: Number(a.gpa),
        entry: a.value!,
        flags: decodeEntry(a.value!, nxe),
      }));
    const f = eptFault!;
    const during = tableAccesses[tableAccesses.length - 1];
    return {
      ...base,
      ok: false,
      stage: 'ept-fault-in-guest-walk',
      guest: null,
      guestSteps,
      tableAccesses,
      gpa: null,
      final: null,
      hpa: null,
      pageSize: null,
      eptFault: f,
      reason: `EPT ${f.kind} on the guest ${during?.guestLevel ?? 'paging-structure'} entry at GPA ${hex(f.gpa)}: ${f.reason}`,
    };
  }

  if (!guest.ok) {
    return {
      ...base,
      ok: false,
      stage: 'guest-page-fault',
      guest,
      guestSteps: guest.steps,
      tableAccesses,
      gpa: null,
      final: null,
      hpa: null,
      pageSize: null,
      eptFault: null,
      reason: `guest ${guest.errorCode === 0 && guest.reason.includes('#GP') ? '#GP' : `#PF (error code ${hex(guest.errorCode)})`}: ${guest.reason}`,
    };
  }

  const gpa = guest.paddr;
  const final = eptWalk(hostMem, eptp, gpa, access, { setAccessedDirty: setAD, guestLinear: 'translation', maxPhysAddrBits: options.maxPhysAddrBits });
  if (!final.ok) {
    return {
      ...base,
      ok: false,
      stage: 'ept-fault-final',
      guest,
      guestSteps: guest.steps,
      tableAccesses,
      gpa,
      final,
      hpa: null,
      pageSize: null,
      eptFault: final,
      reason: `EPT ${final.kind} on the final guest-physical address ${hex(gpa)}: ${final.reason}`,
    };
  }
  return {
    ...base,
    ok: true,
    stage: 'complete',
    guest,
    guestSteps: guest.steps,
    tableAccesses,
    gpa,
    final,
    hpa: final.hpa,
    pageSize: Math.min(guest.pageSize, final.pageSize),
    eptFault: null,
    reason: `GVA ${hex(gva)} -> GPA ${hex(gpa)} -> HPA ${hex(final.hpa)}`,
  };
}
