/**
 * The native TLB fill (machine/cpu/native/tlbfill.c) against the TypeScript walkers, the
 * reference, on random guest page tables (32-bit, PAE, 4-level, paging off) with and without a
 * random EPT under them: whenever C answers a fill, the reference gives the same host address and
 * permissions and would have written nothing (no A/D update); and whenever the reference would
 * answer without writing anything, from plain RAM, for a read or a write, C answers too (so the
 * fast path is taken wherever it may be). Plus: a guest runs the same with and without it, with
 * its refills answered in C.
 */
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { KiB, MemoryError, MiB, PhysicalMemory } from '../../machine/memory/physical-memory.js';
import { walk, type PagingControl, type WalkOk } from '../../machine/cpu/x86/paging.js';
import { GuestPhysicalMemory, EptViolation } from '../../hypervisor/ept/guest-physical.js';
import { NativeTlb } from '../../machine/cpu/native-tlb.js';
import { UC_MEM_FETCH, UC_MEM_READ, UC_MEM_WRITE, UC_PROT_EXEC, UC_PROT_READ, UC_PROT_WRITE } from '../../machine/cpu/unicorn/constants.js';

const RAM = 64 * MiB;

/** xorshift32: deterministic random tables for a seed. */
function rng(seed: number): { u32(): number; chance(p: number): boolean; pick<T>(xs: readonly T[]): T } {
  let s = seed >>> 0 || 1;
  const u32 = (): number => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s;
  };
  return { u32, chance: (p) => u32() / 2 ** 32 < p, pick: (xs) => xs[u32() % xs.length]! };
}

/** Host memory as the reference sees it, with every write logged so it can be undone. */
class LoggedMemory {
  writes: { addr: number; size: 4 | 8; old: bigint }[] = [];
  reads: number[] = [];
  constructor(readonly mem: PhysicalMemory) {}
  readU32(a: number): number {
    this.reads.push(a);
    return this.mem.readU32(a);
  }
  readU64(a: number): bigint {
    this.reads.push(a);
    return this.mem.readU64(a);
  }
  writeU32(a: number, v: number): void {
    this.writes.push({ addr: a, size: 4, old: BigInt(this.mem.readU32(a) >>> 0) });
    this.mem.writeU32(a, v);
  }
  writeU64(a: number, v: bigint): void {
    this.writes.push({ addr: a, size: 8, old: this.mem.readU64(a) });
    this.mem.writeU64(a, v);
  }
  read(a: number, n: number): Uint8Array {
    this.reads.push(a);
    return this.mem.read(a, n);
  }
  readU8(a: number): number {
    this.reads.push(a);
    return this.mem.readU8(a);
  }
  undo(): void {
    for (const w of this.writes.reverse()) {
      if (w.size === 8) this.mem.writeU64(w.addr, w.old);
      else this.mem.writeU32(w.addr, Number(w.old));
    }
    this.writes = [];
    this.reads = [];
  }
}

type Format = 'none' | '32-bit' | '32-bit-pse' | 'pae' | '4-level';

interface Scenario {
  mem: PhysicalMemory;
  ctl: PagingControl;
  eptp: bigint;
  vaddrs: bigint[];
}

const CR0_PE = 1n;
const CR0_WP = 1n << 16n;
const CR0_PG = 1n << 31n;

/** Random guest tables (and EPT) covering some random addresses; flags mostly sane, sometimes not. */
function scenario(seed: number, format: Format, withEpt: boolean): Scenario {
  const r = rng(seed);
  const mem = new PhysicalMemory(RAM, new Uint8Array(128 * KiB));
  // Guest-physical table pages from 16 MiB, data pages anywhere in 1..60 MiB; EPT tables at 56 MiB.
  let nextTable = 16 * MiB;
  const newTable = (): number => {
    const t = nextTable;
    nextTable += 4096;
    return t;
  };
  let nextEpt = 56 * MiB;
  const eptRoot = nextEpt;
  nextEpt += 4096;
  const eptMapped = new Set<number>();
  const adEnabled = r.chance(0.8);
  const eptp = withEpt ? BigInt(eptRoot) | (3n << 3n) | 6n | (adEnabled ? 1n << 6n : 0n) : 0n;

  // EPT entry flags: R (and W only with R, bar a rare misconfiguration), X, WB, A and D at random.
  const eptFlags = (leaf: boolean): bigint => {
    let f = r.chance(0.95) ? 1n : 0n;
    if (r.chance(0.8)) f |= 2n;
    if (f === 2n && !r.chance(0.05)) f |= 1n;
    if (r.chance(0.7)) f |= 4n;
    if (f === 0n && r.chance(0.5)) f = 7n;
    if (leaf) f |= (r.chance(0.97) ? 6n : 2n) << 3n;
    if (r.chance(0.8)) f |= 1n << 8n;
    if (leaf && r.chance(0.7)) f |= 1n << 9n;
    if (r.chance(0.02)) f |= 1n << 45n; // reserved (beyond MAXPHYADDR)
    return f;
  };
  /** Maps the guest-physical page of `gpa` through the EPT (identity, or MMIO-like far away now and then). */
  const eptMap = (gpa: number): void => {
    if (!withEpt) return;
    const page = gpa - (gpa % 4096);
    if (eptMapped.has(page)) return;
    eptMapped.add(page);
    let table = eptRoot;
    for (let level = 0; level < 4; level++) {
      const shift = 39 - 9 * level;
      const at = table + Math.floor(page / 2 ** shift) % 512 * 8;
      const e = mem.readU64(at);
      if (level === 3 || (level === 2 && e === 0n && r.chance(0.15))) {
        if (e !== 0n) return;
        const size = level === 3 ? 4096 : 2 * MiB;
        const target = r.chance(0.03) ? 0xfee00000 : page - (page % size);
        mem.writeU64(at, BigInt(target) | eptFlags(true) | (level === 2 ? 1n << 7n : 0n));
        return;
      }
      if (e & (1n << 7n)) return; // a large leaf covers it already
      if (e === 0n) {
        const next = nextEpt;
        nextEpt += 4096;
        mem.writeU64(at, BigInt(next) | (eptFlags(false) & ~(0x1f8n)) | 1n);
        table = next;
      } else table = Number(e & 0xff_ffff_f000n); // below MAXPHYADDR: a reserved bit set in it is the walkers' business
    }
  };

  const cr0 = CR0_PE | (format === 'none' ? 0n : CR0_PG) | (r.chance(0.7) ? CR0_WP : 0n);
  const cr4 = format === 'pae' || format === '4-level' ? 1n << 5n : format === '32-bit-pse' ? 1n << 4n : 0n;
  const nxe = r.chance(0.7);
  const efer = (format === '4-level' ? (1n << 10n) | (1n << 8n) : 0n) | (nxe ? 1n << 11n : 0n);
  const root = newTable();
  eptMap(root);
  const cr3 = BigInt(root);
  const vaddrs: bigint[] = [];
  const entrySize = format === '32-bit' || format === '32-bit-pse' ? 4 : 8;
  const levels = format === '4-level' ? [39, 30, 21, 12] : format === 'pae' ? [30, 21, 12] : [22, 12];
  const bits = format === '4-level' ? 9 : format === 'pae' ? 9 : 10;
  const guestFlags = (leaf: boolean, largeOk: boolean): { v: bigint; large: boolean } => {
    let v = r.chance(0.93) ? 1n : 0n;
    if (r.chance(0.7)) v |= 2n;
    if (r.chance(0.6)) v |= 4n;
    if (r.chance(0.75)) v |= 0x20n;
    if (leaf && r.chance(0.6)) v |= 0x40n;
    const large = !leaf && largeOk && r.chance(0.15);
    if (large || (!leaf && r.chance(0.02))) v |= 0x80n;
    if (entrySize === 8 && r.chance(0.15)) v |= 1n << 63n;
    if (entrySize === 8 && r.chance(0.03)) v |= 1n << 44n; // reserved
    return { v, large };
  };
  for (let n = 0; n < 40; n++) {
    const canonicalHigh = format === '4-level' && r.chance(0.2);
    let vaddr = format === '4-level' ? BigInt(r.u32() & 0x7fff) * 2n ** 32n + BigInt(r.u32()) : BigInt(r.u32());
    if (canonicalHigh) vaddr |= 0xffff_8000_0000_0000n;
    if (format === '4-level' && r.chance(0.03)) vaddr = 0x0000_9000_0000_0000n; // non-canonical
    vaddr &= ~0xfffn;
    vaddrs.push(vaddr);
    if (format === 'none') {
      eptMap(Number(vaddr & 0xffff_ffffn) % RAM);
      continue;
    }
    let table = root;
    for (let i = 0; i < levels.length; i++) {
      const shift = levels[i]!;
      const idx = format === 'pae' && i === 0 ? Number((vaddr >> 30n) & 3n) : Number((vaddr >> BigInt(shift)) & BigInt((1 << bits) - 1));
      const at = table + idx * entrySize;
      const cur = entrySize === 8 ? mem.readU64(at) : BigInt(mem.readU32(at) >>> 0);
      const leaf = i === levels.length - 1;
      if (cur !== 0n) {
        if (leaf || cur & 0x80n) break;
        table = entrySize === 8 ? Number(cur & 0x000f_ffff_f000n) : Number(cur & 0xffff_f000n);
        continue;
      }
      const pdpte = format === 'pae' && i === 0;
      const largeOk = format === '4-level' ? i >= 1 : format === 'pae' ? i === 1 : format === '32-bit-pse';
      const { v, large } = pdpte ? { v: r.chance(0.95) ? 1n : 0n, large: false } : guestFlags(leaf, largeOk);
      if (leaf || large) {
        const size = 2 ** shift;
        const data = (1 + (r.u32() % 59)) * MiB;
        const base = data - (data % size);
        const addr = format === '32-bit-pse' && large ? BigInt(base) : BigInt(base);
        const entry = addr | v;
        if (entrySize === 8) mem.writeU64(at, entry);
        else mem.writeU32(at, Number(entry & 0xffff_ffffn));
        eptMap(base + Number(vaddr % BigInt(size)));
        break;
      }
      const next = newTable();
      eptMap(next);
      if (entrySize === 8) mem.writeU64(at, BigInt(next) | v);
      else mem.writeU32(at, Number((BigInt(next) | v) & 0xffff_ffffn));
      table = next;
    }
  }
  return { mem, ctl: { cr0, cr3, cr4, efer }, eptp, vaddrs };
}

interface Reference {
  fill: { paddr: bigint; perms: number } | null;
  wrote: boolean;
  inRam: boolean;
  pageSize: number;
}

/** What X86Cpu.tlbFill answers (no watched pages), from the TypeScript walkers. */
function referenceFill(s: Scenario, log: LoggedMemory, vaddr: bigint, type: number, user: boolean): Reference {
  const access = type === UC_MEM_WRITE ? 'write' : type === UC_MEM_FETCH ? 'fetch' : 'read';
  const walkMem = s.eptp ? new GuestPhysicalMemory(log, s.eptp) : log;
  let r;
  try {
    r = walk(walkMem, s.ctl, vaddr, { access, user, setAccessedDirty: true, recordSteps: false });
  } catch (e) {
    // A table in MMIO or nowhere: the CPU's hook fails the fill.
    if (e instanceof EptViolation || e instanceof MemoryError) return { fill: null, wrote: log.writes.length > 0, inRam: false, pageSize: 0 };
    throw e;
  }
  if (!r.ok) return { fill: null, wrote: log.writes.length > 0, inRam: false, pageSize: 0 };
  let ok: WalkOk = r;
  if (s.eptp) {
    try {
      const t = new GuestPhysicalMemory(log, s.eptp, { pagingStructureAccesses: false }).translate(r.paddr & ~0xfffn, access);
      ok = { ...r, paddr: t.hpa, writable: r.writable && t.perms.w, executable: r.executable && t.perms.x, dirty: r.dirty && t.dirty };
    } catch (e) {
      if (e instanceof EptViolation || e instanceof MemoryError) return { fill: null, wrote: log.writes.length > 0, inRam: false, pageSize: 0 };
      throw e;
    }
  }
  let perms = UC_PROT_READ;
  if (access === 'fetch' && ok.executable) perms |= UC_PROT_EXEC;
  if (ok.writable && (access === 'write' || ok.dirty)) perms |= UC_PROT_WRITE;
  const plain = (a: number): boolean => a < RAM && !(a >= 0xa0000 && a < 0x100000);
  const inRam = log.reads.every(plain) && plain(Number(ok.paddr));
  return { fill: { paddr: ok.paddr, perms }, wrote: log.writes.length > 0, inRam, pageSize: ok.pageSize };
}

describe('native TLB fill vs the TypeScript walkers', () => {
  const formats: Format[] = ['none', '32-bit', '32-bit-pse', 'pae', '4-level'];
  for (const withEpt of [false, true]) {
    it(`random ${withEpt ? 'guest tables under a random EPT' : 'guest tables, no EPT'}: same answer, and C answers every fill that needs no write`, () => {
      let native = 0;
      let checked = 0;
      for (let seed = 1; seed <= 25; seed++) {
        for (const format of formats) {
          const s = scenario(seed * 7919 + formats.indexOf(format) + (withEpt ? 1000 : 0), format, withEpt);
          const log = new LoggedMemory(s.mem);
          for (const vaddr of s.vaddrs) {
            for (let pass = 0; pass < 2; pass++) {
              for (const type of [UC_MEM_READ, UC_MEM_WRITE, UC_MEM_FETCH]) {
                for (const cpl of [0, 3]) {
                  const got = NativeTlb.walk(s.mem, s.eptp, { ...s.ctl, cs: cpl === 3 ? 0x1b : 0x08 }, vaddr, type);
                  const ref = referenceFill(s, log, vaddr, type, cpl === 3);
                  const where = `seed ${seed} ${format} vaddr 0x${vaddr.toString(16)} type ${type} cpl ${cpl} pass ${pass}`;
                  if (got) {
                    native++;
                    expect(ref.fill, where).toEqual(got);
                    expect(ref.wrote, `${where}: C answered a fill the reference updates A/D for`).toBe(false);
                  } else if (ref.fill && !ref.wrote && ref.inRam && type !== UC_MEM_FETCH && !(format === '32-bit-pse' && ref.pageSize === 4 * MiB)) {
                    expect.fail(`${where}: C left a fill to TypeScript that needs no update (${JSON.stringify(ref.fill, (_k, v: unknown) => (typeof v === 'bigint' ? `0x${v.toString(16)}` : v))})`);
                  }
                  checked++;
                  // Second pass: keep what the reference wrote (A/D bits now set), so refills are exercised.
                  if (pass === 0) log.writes = [];
                  else log.undo();
                  log.reads = [];
                }
              }
            }
          }
        }
      }
      // Both paths are exercised: C answered thousands of fills, and left others to TypeScript.
      expect(native).toBeGreaterThan(1000);
      expect(native).toBeLessThan(checked);
    }, 120_000);
  }

  it('a guest runs the same with and without it, its refills answered in C', () => {
    const ROOT = path.resolve(import.meta.dirname, '../..');
    const script = path.join(import.meta.dirname, 'fixtures/tlb-run.ts');
    const run = (env: Record<string, string>): { serial: string; exit: unknown; counts: { native: number; js: number } } => {
      const r = spawnSync(process.execPath, ['--import', 'tsx', script, path.join(ROOT, 'images/build/guests/paging.elf')], { cwd: ROOT, encoding: 'utf8', env: { ...process.env, ...env }, timeout: 120_000 });
      if (r.status !== 0) throw new Error(r.stderr);
      return JSON.parse(r.stdout) as { serial: string; exit: unknown; counts: { native: number; js: number } };
    };
    const withC = run({});
    const without = run({ FIRMAMENT_NATIVE_TLB: '0' });
    expect(withC.serial).toBe(without.serial);
    expect(withC.exit).toEqual(without.exit);
    expect(without.counts).toEqual({ native: 0, js: 0 }); // the plain TypeScript hook: not counted
    expect(withC.counts.native).toBeGreaterThan(0);
  }, 120_000);
});
