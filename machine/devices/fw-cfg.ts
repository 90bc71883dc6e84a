/**
 * QEMU fw_cfg, x86 I/O-port flavour: selector 0x510 (16-bit write), data
 * 0x511 (8-bit read, auto-increment) and the DMA interface at 0x514..0x51B.
 * Layout, file-directory ordering and DMA semantics follow QEMU's
 * hw/nvram/fw_cfg.c, so the same firmware code works here and under QEMU.
 * All items are read-only, as QEMU's are unless a board makes one writable.
 */
import type { AccessSize, PhysicalMemoryAccess, PortIoDevice, PortRange } from './device.js';
import { checkVersion, StateError, type StateRecord } from '../state.js';
import { allOnes, bswap32, fnv1a, stateInt } from './dev-util.js';

export const FW_CFG_SIGNATURE = 0x00;
export const FW_CFG_ID = 0x01;
export const FW_CFG_UUID = 0x02;
export const FW_CFG_RAM_SIZE = 0x03;
export const FW_CFG_NB_CPUS = 0x05;
export const FW_CFG_MAX_CPUS = 0x0f;
export const FW_CFG_FILE_DIR = 0x19;
export const FW_CFG_FILE_FIRST = 0x20;
/** Bit 15 selects the architecture-specific table (e.g. 0x8003 = E820 on x86). */
export const FW_CFG_ARCH_LOCAL = 0x8000;
const FW_CFG_WRITE_CHANNEL = 0x4000;
const FW_CFG_ENTRY_MASK = 0x3fff;
const INVALID = -1;

export const FW_CFG_DMA_CTL_ERROR = 0x01;
export const FW_CFG_DMA_CTL_READ = 0x02;
export const FW_CFG_DMA_CTL_SKIP = 0x04;
export const FW_CFG_DMA_CTL_SELECT = 0x08;
export const FW_CFG_DMA_CTL_WRITE = 0x10;

/** FW_CFG_ID feature bits. */
export const FW_CFG_VERSION_TRADITIONAL = 0x01;
export const FW_CFG_VERSION_DMA = 0x02;

export const FW_CFG_MAX_FILE_NAME = 56; // including the NUL
/** QEMU's default number of file slots (x-file-slots) for current machine types. */
export const FW_CFG_FILE_SLOTS_DEFAULT = 0x20;

const DMA_SIGNATURE = new TextEncoder().encode('QEMU CFG');
const DMA_DESCRIPTOR_SIZE = 16;

export interface FwCfgOptions {
  /** Guest memory for DMA transfers. */
  memory: PhysicalMemoryAccess;
  ramBytes: number;
  cpus: number;
  maxCpus?: number;
  /** 16 bytes; default derived deterministically from the configuration. */
  uuid?: Uint8Array;
  /** Selector port; data is base+1, DMA is base+4..base+11. Default 0x510. */
  base?: number;
  fileSlots?: number;
}

export interface FwCfgFileEntry {
  readonly name: string;
  readonly select: number;
  readonly size: number;
}

interface FileItem {
  name: string;
  nameBytes: Uint8Array;
  data: Uint8Array;
}

const STATE_VERSION = 1;

export class FwCfg implements PortIoDevice {
  readonly name: string;
  readonly snapshotId: string;
  readonly stateVersion = STATE_VERSION;
  readonly ports: readonly PortRange[];
  readonly base: number;

  private readonly memory: PhysicalMemoryAccess;
  private readonly fileSlots: number;
  private readonly items = new Map<number, Uint8Array>();
  private readonly fileList: FileItem[] = [];
  private curEntry = INVALID;
  private curOffset = 0;
  private dmaAddr = 0;

  constructor(opts: FwCfgOptions) {
    this.memory = opts.memory;
    this.base = opts.base ?? 0x510;
    this.fileSlots = opts.fileSlots ?? FW_CFG_FILE_SLOTS_DEFAULT;
    if (!Number.isInteger(this.fileSlots) || this.fileSlots < 1 || FW_CFG_FILE_FIRST + this.fileSlots > FW_CFG_ENTRY_MASK + 1) {
      throw new RangeError(`fw_cfg: bad fileSlots ${opts.fileSlots}`);
    }
    this.ports = [
      { base: this.base, length: 2 },
      { base: this.base + 4, length: 8 },
    ];
    this.name = `fw-cfg@0x${this.base.toString(16)}`;
    this.snapshotId = this.name;

    const maxCpus = opts.maxCpus ?? opts.cpus;
    if (!Number.isInteger(opts.cpus) || opts.cpus < 1 || opts.cpus > 0xffff) throw new RangeError(`fw_cfg: bad cpu count ${opts.cpus}`);
    if (!Number.isInteger(maxCpus) || maxCpus < opts.cpus || maxCpus > 0xffff) throw new RangeError(`fw_cfg: bad maxCpus ${maxCpus}`);
    if (!Number.isSafeInteger(opts.ramBytes) || opts.ramBytes < 0) throw new RangeError(`fw_cfg: bad ramBytes ${opts.ramBytes}`);
    const uuid = opts.uuid ?? deriveUuid(`firmament:ram=${opts.ramBytes}:cpus=${opts.cpus}:max=${maxCpus}`);
    if (uuid.length !== 16) throw new RangeError('fw_cfg: uuid must be 16 bytes');

    this.items.set(FW_CFG_SIGNATURE, new TextEncoder().encode('QEMU'));
    this.items.set(FW_CFG_ID, le32(FW_CFG_VERSION_TRADITIONAL | FW_CFG_VERSION_DMA));
    this.items.set(FW_CFG_UUID, uuid.slice());
    this.items.set(FW_CFG_RAM_SIZE, le64(opts.ramBytes));
    this.items.set(FW_CFG_NB_CPUS, le16(opts.cpus));
    this.items.set(FW_CFG_MAX_CPUS, le16(maxCpus));
    this.rebuildDirectory();
  }

  // ---- configuration (platform side) ----

  /**
   * Adds a named blob. Files are kept sorted by name (strcmp order) and get
   * selectors 0x20, 0x21, ... in that order, so adding a file can move the
   * selectors of files after it, exactly as in QEMU. Returns the current selector.
   */
  addFile(name: string, bytes: Uint8Array): number {
    const nameBytes = new TextEncoder().encode(name);
    if (nameBytes.length === 0 || nameBytes.length > FW_CFG_MAX_FILE_NAME - 1) {
      throw new RangeError(`fw_cfg: file name '${name}' must be 1..${FW_CFG_MAX_FILE_NAME - 1} bytes`);
    }
    if (nameBytes.includes(0)) throw new RangeError(`fw_cfg: file name '${name}' contains NUL`);
    if (this.fileList.some((f) => f.name === name)) throw new Error(`fw_cfg: duplicate file name '${name}'`);
    if (this.fileList.length >= this.fileSlots) throw new Error(`fw_cfg: no free file slot for '${name}' (${this.fileSlots} slots)`);
    let i = this.fileList.length;
    while (i > 0 && compareBytes(nameBytes, this.fileList[i - 1]!.nameBytes) < 0) i--;
    this.fileList.splice(i, 0, { name, nameBytes, data: bytes.slice() });
    this.rebuildDirectory();
    return FW_CFG_FILE_FIRST + i;
  }

  /** Sets a numbered item (e.g. an arch-local key like 0x8003). Replaces an existing one. */
  addItem(key: number, bytes: Uint8Array): void {
    if (!Number.isInteger(key) || key < 0 || key > 0xffff || key & FW_CFG_WRITE_CHANNEL) throw new RangeError(`fw_cfg: bad key 0x${key.toString(16)}`);
    const idx = key & FW_CFG_ENTRY_MASK;
    if (idx >= this.maxEntry()) throw new RangeError(`fw_cfg: key 0x${key.toString(16)} beyond the last entry`);
    if (!(key & FW_CFG_ARCH_LOCAL) && idx >= FW_CFG_FILE_FIRST) throw new RangeError(`fw_cfg: key 0x${key.toString(16)} is in the file range; use addFile`);
    if (key === FW_CFG_FILE_DIR) throw new RangeError('fw_cfg: FILE_DIR is maintained by addFile');
    this.items.set(key, bytes.slice());
  }

  files(): FwCfgFileEntry[] {
    return this.fileList.map((f, i) => ({ name: f.name, select: FW_CFG_FILE_FIRST + i, size: f.data.length }));
  }

  fileSelector(name: string): number | undefined {
    const i = this.fileList.findIndex((f) => f.name === name);
    return i < 0 ? undefined : FW_CFG_FILE_FIRST + i;
  }

  /** Contents for a selector, as the guest would read them (undefined if empty/invalid). */
  itemData(key: number): Uint8Array | undefined {
    const d = this.entryData(key);
    return d ? d.slice() : undefined;
  }

  private maxEntry(): number {
    return FW_CFG_FILE_FIRST + this.fileSlots;
  }

  private rebuildDirectory(): void {
    const dir = new Uint8Array(4 + this.fileList.length * 64);
    const dv = new DataView(dir.buffer);
    dv.setUint32(0, this.fileList.length, false);
    this.fileList.forEach((f, i) => {
      const o = 4 + i * 64;
      dv.setUint32(o, f.data.length, false);
      dv.setUint16(o + 4, FW_CFG_FILE_FIRST + i, false);
      dv.setUint16(o + 6, 0, false);
      dir.set(f.nameBytes, o + 8);
    });
    this.items.set(FW_CFG_FILE_DIR, dir);
  }

  private entryData(key: number): Uint8Array | undefined {
    if (key === INVALID) return undefined;
    const idx = key & FW_CFG_ENTRY_MASK;
    if (idx >= this.maxEntry()) return undefined;
    if (!(key & FW_CFG_ARCH_LOCAL) && idx >= FW_CFG_FILE_FIRST) return this.fileList[idx - FW_CFG_FILE_FIRST]?.data;
    return this.items.get((key & FW_CFG_ARCH_LOCAL) | idx);
  }

  // ---- guest interface ----

  private select(key: number): void {
    this.curOffset = 0;
    this.curEntry = (key & FW_CFG_ENTRY_MASK) >= this.maxEntry() ? INVALID : key;
  }

  private readDataByte(): number {
    const d = this.entryData(this.curEntry);
    if (!d || this.curOffset >= d.length) return 0; // past the end reads 0 and does not advance
    return d[this.curOffset++]!;
  }

  ioRead(port: number, size: AccessSize): number {
    const off = port - this.base;
    if (off === 0 || off === 1) return size === 1 ? this.readDataByte() : allOnes(size);
    if (off >= 4 && off < 12) {
      // The DMA address register reads back the big-endian signature "QEMU CFG".
      let v = 0;
      for (let i = 0; i < size; i++) {
        const k = off - 4 + i;
        v |= (k < 8 ? DMA_SIGNATURE[k]! : 0xff) << (8 * i);
      }
      return v >>> 0;
    }
    return allOnes(size);
  }

  ioWrite(port: number, size: AccessSize, value: number): void {
    const off = port - this.base;
    if (off === 0 && size === 2) {
      this.select(value & 0xffff);
      return;
    }
    // The registers are big-endian: the guest writes cpu_to_be32(half) with outl.
    if (off === 4 && size === 4) {
      this.dmaAddr = bswap32(value) * 0x1_0000_0000;
    } else if (off === 8 && size === 4) {
      this.dmaAddr += bswap32(value);
      this.dmaTransfer();
    }
    // Byte writes to the data port were removed from QEMU; other sizes are ignored too.
  }

  private dmaTransfer(): void {
    const descAddr = this.dmaAddr;
    this.dmaAddr = 0;
    let desc: Uint8Array;
    try {
      desc = this.memory.read(descAddr, DMA_DESCRIPTOR_SIZE);
    } catch {
      this.writeControl(descAddr, FW_CFG_DMA_CTL_ERROR);
      return;
    }
    const dv = new DataView(desc.buffer, desc.byteOffset, DMA_DESCRIPTOR_SIZE);
    let control = dv.getUint32(0, false);
    let length = dv.getUint32(4, false);
    let address = dv.getUint32(8, false) * 0x1_0000_0000 + dv.getUint32(12, false);

    if (control & FW_CFG_DMA_CTL_SELECT) this.select(control >>> 16);
    let read = false;
    let write = false;
    if (control & FW_CFG_DMA_CTL_READ) read = true;
    else if (control & FW_CFG_DMA_CTL_WRITE) write = true;
    else if (!(control & FW_CFG_DMA_CTL_SKIP)) length = 0;

    control = 0;
    const data = this.entryData(this.curEntry);
    while (length > 0 && !(control & FW_CFG_DMA_CTL_ERROR)) {
      let len: number;
      if (!data || this.curOffset >= data.length) {
        // Past the end: reads fill with zeros, writes fail; the offset stays put.
        len = length;
        if (read && !this.tryWrite(address, new Uint8Array(len))) control |= FW_CFG_DMA_CTL_ERROR;
        if (write) control |= FW_CFG_DMA_CTL_ERROR;
      } else {
        len = Math.min(length, data.length - this.curOffset);
        if (read && !this.tryWrite(address, data.subarray(this.curOffset, this.curOffset + len))) control |= FW_CFG_DMA_CTL_ERROR;
        if (write) control |= FW_CFG_DMA_CTL_ERROR; // every item is read-only
        this.curOffset += len;
      }
      address += len;
      length -= len;
    }
    this.writeControl(descAddr, control);
  }

  private tryWrite(addr: number, bytes: Uint8Array): boolean {
    try {
      this.memory.write(addr, bytes);
      return true;
    } catch {
      return false;
    }
  }

  private writeControl(descAddr: number, control: number): void {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, control >>> 0, false);
    this.tryWrite(descAddr, b);
  }

  // ---- snapshot ----

  /** Items are configuration rebuilt by the platform; the snapshot only checks they match. */
  private contentDigest(): number {
    const enc = new TextEncoder();
    let h = fnv1a(new Uint8Array(0));
    const keys = [...this.items.keys()].sort((a, b) => a - b);
    for (const k of keys) {
      const d = this.items.get(k)!;
      h = fnv1a(enc.encode(`${k}:${d.length};`), h);
      h = fnv1a(d, h);
    }
    for (const f of this.fileList) {
      h = fnv1a(enc.encode(`${f.name}:${f.data.length};`), h);
      h = fnv1a(f.data, h);
    }
    return h;
  }

  saveState(): StateRecord {
    return {
      version: STATE_VERSION,
      curEntry: this.curEntry,
      curOffset: this.curOffset,
      dmaAddr: this.dmaAddr,
      contentDigest: this.contentDigest(),
    };
  }

  restoreState(state: StateRecord): void {
    const id = this.snapshotId;
    checkVersion(state, STATE_VERSION, id);
    const curEntry = stateInt(state, 'curEntry', id, INVALID, 0xffff);
    const curOffset = stateInt(state, 'curOffset', id, 0, 0xffffffff);
    const dmaAddr = stateInt(state, 'dmaAddr', id, 0, Number.MAX_SAFE_INTEGER);
    const digest = stateInt(state, 'contentDigest', id, 0, 0xffffffff);
    if (digest !== this.contentDigest()) throw new StateError(id, 'contentDigest', 'fw_cfg items differ from the snapshot; rebuild the same configuration first');
    this.curEntry = curEntry;
    this.curOffset = curOffset;
    this.dmaAddr = dmaAddr;
  }
}

function le16(v: number): Uint8Array {
  return Uint8Array.of(v & 0xff, (v >> 8) & 0xff);
}

function le32(v: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, v >>> 0, true);
  return b;
}

function le64(v: number): Uint8Array {
  const b = new Uint8Array(8);
  const dv = new DataView(b.buffer);
  dv.setUint32(0, v % 0x1_0000_0000, true);
  dv.setUint32(4, Math.floor(v / 0x1_0000_0000), true);
  return b;
}

/** strcmp on the encoded names, as QEMU sorts FILE_DIR. */
function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return a.length - b.length;
}

/** A stable RFC 4122 "version 8" (custom) UUID from a configuration string. */
function deriveUuid(seed: string): Uint8Array {
  const enc = new TextEncoder().encode(seed);
  const out = new Uint8Array(16);
  const dv = new DataView(out.buffer);
  let h = fnv1a(enc);
  for (let i = 0; i < 4; i++) {
    h = fnv1a(enc, h ^ (0x9e3779b9 * (i + 1)));
    dv.setUint32(i * 4, h, false);
  }
  out[6] = (out[6]! & 0x0f) | 0x80;
  out[8] = (out[8]! & 0x3f) | 0x80;
  return out;
}
