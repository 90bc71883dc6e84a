/**
 * Memory view: hex + ASCII rows of physical memory, or of linear memory
 * through the selected CPU's page tables (page by page, unmapped pages shown
 * as null bytes). Reads never have side effects: bad-RAM ranges show the
 * stored bytes, not what a faulty read would return.
 */
import { PhysicalMemory } from '../memory/physical-memory.js';
import type { CpuMemory, X86Cpu } from '../cpu/x86-cpu.js';
import { hex, hex64, parseAddress } from './hex.js';

export type AddressSpace = 'physical' | 'virtual';

export interface MemoryRequest {
  space: AddressSpace;
  address: bigint | number | string;
  length: number;
  /** CPU whose paging translates virtual addresses (default 0). */
  cpu?: number;
  /** Bytes per row (default 16). */
  width?: number;
}

export interface MemoryRow {
  address: string;
  /** "de ad be ef ?? ..." with ?? for unreadable bytes. */
  hex: string;
  ascii: string;
}

export interface MemoryView {
  space: AddressSpace;
  cpu: number;
  address: string;
  length: number;
  /** Byte values, null where nothing is mapped (or the page walk faulted). */
  bytes: (number | null)[];
  rows: MemoryRow[];
  /** Virtual reads: the physical page each linear page maps to (null = fault). */
  pages?: { linear: string; physical: string | null; fault?: string }[];
}

export interface InspectableMachine {
  readonly memory: PhysicalMemory;
  readonly cpus: readonly X86Cpu[];
  /** Resolves the request's CPU when it is not one of `cpus` (a guest vCPU). */
  cpuFor?: (index: number) => X86Cpu | undefined;
}

export const MAX_MEMORY_READ = 64 * 1024;

/** One byte of physical memory for inspection, or null if nothing answers there. */
export function peekPhysical(memory: PhysicalMemory, paddr: number): number | null {
  const region = memory.regionAt(paddr);
  if (!region) return null;
  if (region.kind === 'bad-ram') return memory.ram[memory.ramOffset(paddr)] ?? null;
  try {
    return memory.readU8(paddr);
  } catch {
    return null;
  }
}

/** A byte of whatever address space a CPU walks (guest-physical for a VM's vCPU). */
function peekCpuMemory(memory: CpuMemory, paddr: number): number | null {
  if (memory instanceof PhysicalMemory) return peekPhysical(memory, paddr);
  try {
    return memory.readU8(paddr);
  } catch {
    return null;
  }
}

export function readPhysical(memory: CpuMemory, paddr: bigint, length: number): (number | null)[] {
  const out: (number | null)[] = [];
  for (let i = 0; i < length; i++) {
    const a = paddr + BigInt(i);
    out.push(a > BigInt(Number.MAX_SAFE_INTEGER) ? null : peekCpuMemory(memory, Number(a)));
  }
  return out;
}

/** Reads linear memory through `cpu`'s current paging, page by page. */
export function readLinear(cpu: X86Cpu, linear: bigint, length: number, access: 'read' | 'fetch' = 'read'): { bytes: (number | null)[]; pages: NonNullable<MemoryView['pages']> } {
  const bytes: (number | null)[] = [];
  const pages: NonNullable<MemoryView['pages']> = [];
  let addr = linear;
  const end = linear + BigInt(length);
  while (addr < end) {
    const pageEnd = (addr | 0xfffn) + 1n;
    const n = Number((pageEnd < end ? pageEnd : end) - addr);
    const walk = cpu.translate(addr, access);
    if (walk.ok) {
      pages.push({ linear: hex64(addr & ~0xfffn), physical: hex64(walk.paddr & ~0xfffn) });
      bytes.push(...readPhysical(cpu.memory, walk.paddr, n));
    } else {
      pages.push({ linear: hex64(addr & ~0xfffn), physical: null, fault: walk.reason });
      for (let i = 0; i < n; i++) bytes.push(null);
    }
    addr += BigInt(n);
  }
  return { bytes, pages };
}

export function formatRows(start: bigint, bytes: readonly (number | null)[], width = 16): MemoryRow[] {
  const rows: MemoryRow[] = [];
  for (let i = 0; i < bytes.length; i += width) {
    const chunk = bytes.slice(i, i + width);
    rows.push({
      address: hex64(start + BigInt(i)),
      hex: chunk.map((b) => (b === null ? '??' : b.toString(16).padStart(2, '0'))).join(' '),
      ascii: chunk.map((b) => (b === null ? ' ' : b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : '.')).join(''),
    });
  }
  return rows;
}

export function readMemory(machine: InspectableMachine, req: MemoryRequest): MemoryView {
  const address = parseAddress(req.address);
  const length = Math.max(0, Math.min(req.length, MAX_MEMORY_READ));
  const cpuIndex = req.cpu ?? 0;
  const cpu = machine.cpuFor ? machine.cpuFor(cpuIndex) : machine.cpus[cpuIndex];
  if (req.space === 'physical') {
    // A guest vCPU's "physical" is guest-physical: read through its walk memory.
    const bytes = machine.cpuFor && cpu ? readPhysical(cpu.memory, address, length) : readPhysical(machine.memory, address, length);
    return { space: 'physical', cpu: cpuIndex, address: hex(address), length, bytes, rows: formatRows(address, bytes, req.width) };
  }
  if (!cpu) throw new RangeError(`no CPU ${cpuIndex} (the machine has ${machine.cpus.length})`);
  const { bytes, pages } = readLinear(cpu, address, length);
  return { space: 'virtual', cpu: cpuIndex, address: hex(address), length, bytes, rows: formatRows(address, bytes, req.width), pages };
}
