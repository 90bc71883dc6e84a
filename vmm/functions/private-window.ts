/**
 * Host access to a pool VM's private range (mailbox, ELF staging, body, output)
 * without an EPT walk per access. A clone's private range is in frames of its
 * own from creation to removal, so where each page lives is looked up once.
 * Writes still go through PhysicalMemory.write, which tells the engines (code
 * over those frames is dropped) as every host write does.
 */
import type { GuestMemory } from '../../hypervisor/memory/guest-memory.js';
import type { PhysicalMemory } from '../../machine/memory/physical-memory.js';

/** What the ABI helpers (abi.ts) need: GuestMemory, or this faster window onto part of it. */
export interface FnMemory {
  /** The bytes at [gpa, gpa+length): a view or a copy, to be copied by a caller that keeps them. */
  read(gpa: number, length: number): Uint8Array;
  write(gpa: number, data: Uint8Array): void;
}

interface Run {
  gpa: number;
  hpa: number;
  length: number;
}

export class PrivateWindow implements FnMemory {
  private readonly runs: Run[];

  constructor(
    private readonly memory: GuestMemory,
    private readonly host: PhysicalMemory,
    readonly range: { gpa: number; length: number },
  ) {
    this.runs = memory.ept.ranges(range.gpa, range.length).map((r) => ({ gpa: r.gpa, hpa: r.hpa, length: r.length }));
    let covered = 0;
    for (const r of this.runs) covered += Math.min(r.gpa + r.length, range.gpa + range.length) - Math.max(r.gpa, range.gpa);
    if (covered !== range.length) throw new RangeError(`${memory.owner}: the private range 0x${range.gpa.toString(16)}+0x${range.length.toString(16)} is not all mapped (${covered} bytes are)`);
  }

  private runAt(gpa: number): Run | null {
    for (const r of this.runs) if (gpa >= r.gpa && gpa < r.gpa + r.length) return r;
    return null;
  }

  read(gpa: number, length: number): Uint8Array {
    const r = this.runAt(gpa);
    if (!r || gpa + length > r.gpa + r.length) return this.memory.read(gpa, length);
    const hpa = r.hpa + (gpa - r.gpa);
    const off = this.host.ramOffset(hpa);
    // A view only where the host RAM is one piece (no hole, no bad-RAM model in between).
    if (off < 0 || length === 0 || this.host.ramOffset(hpa + length - 1) !== off + length - 1) return this.memory.read(gpa, length);
    return this.host.ram.subarray(off, off + length);
  }

  write(gpa: number, data: Uint8Array): void {
    let done = 0;
    while (done < data.length) {
      const at = gpa + done;
      const r = this.runAt(at);
      if (!r) {
        this.memory.write(at, data.subarray(done));
        return;
      }
      const n = Math.min(data.length - done, r.gpa + r.length - at);
      this.host.write(r.hpa + (at - r.gpa), data.subarray(done, done + n));
      done += n;
    }
  }
}
