/**
 * Port-I/O and MMIO dispatch. The CPU layer's IN/OUT and MMIO hooks call
 * these; devices only ever see accesses inside the ranges they claimed.
 */
import type { AccessSize, MmioDevice, PortIoDevice } from './device.js';
import { allOnes } from './dev-util.js';

const PORT_SPACE = 0x10000;

/** One unclaimed port as shown by the UI: how often it was touched and the last value written. */
export interface UnclaimedPortRecord {
  readonly port: number;
  readonly reads: number;
  readonly writes: number;
  /** Last value written, or null if the port was only read. */
  readonly lastWriteValue: number | null;
  readonly lastSize: AccessSize;
}

interface MutableUnclaimed {
  port: number;
  reads: number;
  writes: number;
  lastWriteValue: number | null;
  lastSize: AccessSize;
}

function hex(n: number, digits = 4): string {
  return '0x' + n.toString(16).padStart(digits, '0');
}

export class IoBus {
  private readonly devs: PortIoDevice[] = [];
  /** Device index per port, -1 when unclaimed: O(1) dispatch on every IN/OUT. */
  private readonly owner = new Int16Array(PORT_SPACE).fill(-1);
  private readonly unclaimedMap = new Map<number, MutableUnclaimed>();

  /** Claims every range of `dev`; throws without claiming anything if any port is already taken. */
  register(dev: PortIoDevice): void {
    if (this.devs.includes(dev)) throw new Error(`IoBus: device '${dev.name}' is already registered`);
    if (this.devs.length >= 0x7fff) throw new Error('IoBus: too many devices');
    for (const r of dev.ports) {
      if (!Number.isInteger(r.base) || !Number.isInteger(r.length) || r.length <= 0 || r.base < 0 || r.base + r.length > PORT_SPACE) {
        throw new Error(`IoBus: device '${dev.name}' claims invalid port range base=${r.base} length=${r.length}`);
      }
      for (let p = r.base; p < r.base + r.length; p++) {
        const o = this.owner[p]!;
        if (o >= 0) {
          const other = this.devs[o]!;
          throw new Error(
            `IoBus: device '${dev.name}' range ${hex(r.base)}-${hex(r.base + r.length - 1)} overlaps '${other.name}' at port ${hex(p)}`,
          );
        }
      }
      // Overlap between two ranges of the same device is also a configuration error.
      for (const r2 of dev.ports) {
        if (r2 !== r && r2.base < r.base + r.length && r.base < r2.base + r2.length) {
          throw new Error(`IoBus: device '${dev.name}' declares overlapping ranges at ${hex(r.base)} and ${hex(r2.base)}`);
        }
      }
    }
    const idx = this.devs.length;
    this.devs.push(dev);
    for (const r of dev.ports) this.owner.fill(idx, r.base, r.base + r.length);
  }

  devices(): readonly PortIoDevice[] {
    return [...this.devs];
  }

  deviceAt(port: number): PortIoDevice | undefined {
    const o = this.owner[port & 0xffff]!;
    return o >= 0 ? this.devs[o] : undefined;
  }

  ioRead(port: number, size: AccessSize): number {
    checkPortSize(size);
    port &= 0xffff;
    const o = this.owner[port]!;
    if (o >= 0 && this.sameOwner(port, size, o)) return (this.devs[o]!.ioRead(port, size) & mask(size)) >>> 0;
    if (o < 0 && this.allUnclaimed(port, size)) {
      this.noteUnclaimed(port, size, null);
      return allOnes(size);
    }
    // Access straddles device boundaries: split into bytes like the ISA bus does.
    let v = 0;
    for (let i = 0; i < size; i++) v |= this.ioRead((port + i) & 0xffff, 1) << (8 * i);
    return v >>> 0;
  }

  ioWrite(port: number, size: AccessSize, value: number): void {
    checkPortSize(size);
    port &= 0xffff;
    value = (value & mask(size)) >>> 0;
    const o = this.owner[port]!;
    if (o >= 0 && this.sameOwner(port, size, o)) {
      this.devs[o]!.ioWrite(port, size, value);
      return;
    }
    if (o < 0 && this.allUnclaimed(port, size)) {
      this.noteUnclaimed(port, size, value);
      return;
    }
    for (let i = 0; i < size; i++) this.ioWrite((port + i) & 0xffff, 1, (value >>> (8 * i)) & 0xff);
  }

  /** Unclaimed ports that were accessed, sorted by port, for the inspection UI. */
  unclaimed(): UnclaimedPortRecord[] {
    return [...this.unclaimedMap.values()].sort((a, b) => a.port - b.port).map((r) => ({ ...r }));
  }

  clearUnclaimed(): void {
    this.unclaimedMap.clear();
  }

  private sameOwner(port: number, size: number, o: number): boolean {
    for (let i = 1; i < size; i++) if (this.owner[(port + i) & 0xffff] !== o) return false;
    return true;
  }

  private allUnclaimed(port: number, size: number): boolean {
    return this.sameOwner(port, size, -1);
  }

  private noteUnclaimed(port: number, size: AccessSize, writeValue: number | null): void {
    let r = this.unclaimedMap.get(port);
    if (!r) {
      r = { port, reads: 0, writes: 0, lastWriteValue: null, lastSize: size };
      this.unclaimedMap.set(port, r);
    }
    r.lastSize = size;
    if (writeValue === null) r.reads++;
    else {
      r.writes++;
      r.lastWriteValue = writeValue;
    }
  }
}

function checkPortSize(size: AccessSize): void {
  if (size !== 1 && size !== 2 && size !== 4) throw new RangeError(`IoBus: port access size ${size} is not 1, 2 or 4`);
}

function mask(size: AccessSize): number {
  return size === 4 ? 0xffffffff : (1 << (8 * size)) - 1;
}

/** Result of an MMIO lookup: the device, which of its ranges, and the offset inside that range. */
export interface MmioHit {
  readonly device: MmioDevice;
  readonly rangeIndex: number;
  readonly base: number;
  readonly offset: number;
}

interface MmioEntry {
  base: number;
  end: number; // exclusive
  device: MmioDevice;
  rangeIndex: number;
}

/**
 * MMIO regions, kept sorted by base for binary search. Addresses are plain
 * numbers (guest-physical, < 2^53). Per-CPU regions such as the local APIC
 * belong on a per-CPU bus, since every CPU's APIC sits at the same address.
 */
export class MmioBus {
  private entries: MmioEntry[] = [];

  register(dev: MmioDevice): void {
    const added: MmioEntry[] = dev.mmio.map((r, i) => {
      if (!Number.isSafeInteger(r.base) || !Number.isSafeInteger(r.length) || r.base < 0 || r.length <= 0) {
        throw new Error(`MmioBus: device '${dev.name}' claims invalid range base=${r.base} length=${r.length}`);
      }
      return { base: r.base, end: r.base + r.length, device: dev, rangeIndex: i };
    });
    const all = [...this.entries, ...added].sort((a, b) => a.base - b.base);
    for (let i = 1; i < all.length; i++) {
      const a = all[i - 1]!;
      const b = all[i]!;
      if (b.base < a.end) {
        throw new Error(
          `MmioBus: '${b.device.name}' range ${hex(b.base, 8)}-${hex(b.end - 1, 8)} overlaps '${a.device.name}' range ${hex(a.base, 8)}-${hex(a.end - 1, 8)}`,
        );
      }
    }
    this.entries = all;
  }

  find(addr: number): MmioHit | undefined {
    let lo = 0;
    let hi = this.entries.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const e = this.entries[mid]!;
      if (addr < e.base) hi = mid - 1;
      else if (addr >= e.end) lo = mid + 1;
      else return { device: e.device, rangeIndex: e.rangeIndex, base: e.base, offset: addr - e.base };
    }
    return undefined;
  }

  /** Returns undefined when nothing is mapped, so the caller decides between RAM, ROM and open bus. */
  read(addr: number, size: AccessSize): number | undefined {
    const hit = this.find(addr);
    return hit ? hit.device.mmioRead(hit.offset, size) : undefined;
  }

  /** Returns false when nothing is mapped at `addr`. */
  write(addr: number, size: AccessSize, value: number): boolean {
    const hit = this.find(addr);
    if (!hit) return false;
    hit.device.mmioWrite(hit.offset, size, value);
    return true;
  }

  devices(): readonly MmioDevice[] {
    return [...new Set(this.entries.map((e) => e.device))];
  }
}
