/**
 * buildMultibootInfo(): byte-exact layout, QEMU-compatible values, and the
 * link to the golden transcripts: the `hello` guest reading our MBI must
 * print exactly what it printed under QEMU.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import {
  DEFAULT_MBI_REGION,
  MBI_OFFSETS,
  MBI_SIZE,
  MultibootInfoError,
  QEMU_MBI_FLAGS,
  buildMultibootInfo,
  computeMemLower,
  computeMemUpper,
  qemuPcMemoryMap,
  type MemoryMapEntry,
} from '../../hypervisor/multiboot/index.js';

const EXPECTED_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../guests/expected');
const MiB = 1 << 20;

/** Parse "aa bb cc ..." lines (comments after '#') into bytes. */
function hexBytes(text: string): number[] {
  return text
    .split('\n')
    .map((l) => l.replace(/#.*/, '').trim())
    .filter(Boolean)
    .flatMap((l) => l.split(/\s+/).map((h) => parseInt(h, 16)));
}

describe('buildMultibootInfo', () => {
  it('lays out the mmap, MBI and strings byte by byte at QEMU addresses: mmap 0x9000, MBI (EBX) 0x9500 (QEMU -m 64 memory map)', () => {
    const info = buildMultibootInfo({
      memoryMap: qemuPcMemoryMap(64 * MiB),
      cmdline: 'hello.elf ',
      bootLoaderName: 'firmament',
      placeAt: { base: 0x9000, size: 0x1000 },
    });
    const mmap = hexBytes(`
      # 0x000 mmap (QEMU's ADDR_E820_MAP): size(4) base(8) length(8) type(4)
      14 00 00 00  00 00 00 00 00 00 00 00  00 fc 09 00 00 00 00 00  01 00 00 00
      14 00 00 00  00 fc 09 00 00 00 00 00  00 04 00 00 00 00 00 00  02 00 00 00
      14 00 00 00  00 00 0f 00 00 00 00 00  00 00 01 00 00 00 00 00  02 00 00 00
      14 00 00 00  00 00 10 00 00 00 00 00  00 00 ee 03 00 00 00 00  01 00 00 00
      14 00 00 00  00 00 fe 03 00 00 00 00  00 00 02 00 00 00 00 00  02 00 00 00
      14 00 00 00  00 00 fc ff 00 00 00 00  00 00 04 00 00 00 00 00  02 00 00 00
      14 00 00 00  00 00 00 00 fd 00 00 00  00 00 00 00 03 00 00 00  02 00 00 00
    `);
    const mbi = hexBytes(`
      # 0x500 MBI (QEMU's ADDR_MBI)
      4f 02 00 00   # 0x00 flags 0x24f: mem, boot_device, cmdline, mods, mmap, boot_loader_name
      7f 02 00 00   # 0x04 mem_lower 639
      80 fb 00 00   # 0x08 mem_upper 64384
      ff ff 00 80   # 0x0c boot_device 0x8000ffff
      58 95 00 00   # 0x10 cmdline -> 0x9558
      00 00 00 00   # 0x14 mods_count 0
      58 95 00 00   # 0x18 mods_addr -> 0x9558 (empty list, as QEMU sets it)
      00 00 00 00  00 00 00 00  00 00 00 00  00 00 00 00   # 0x1c syms
      a8 00 00 00   # 0x2c mmap_length 168 = 7 * 24
      00 90 00 00   # 0x30 mmap_addr -> 0x9000
      00 00 00 00   # 0x34 drives_length
      00 00 00 00   # 0x38 drives_addr
      00 00 00 00   # 0x3c config_table
      63 95 00 00   # 0x40 boot_loader_name -> 0x9563
      00 00 00 00   # 0x44 apm_table
      00 00 00 00   # 0x48 vbe_control_info
      00 00 00 00   # 0x4c vbe_mode_info
      00 00 00 00 00 00 00 00   # 0x50 vbe_mode, vbe_interface_seg/off/len
      # 0x558 cmdline "hello.elf "
      68 65 6c 6c 6f 2e 65 6c 66 20 00
      # 0x563 boot loader name "firmament"
      66 69 72 6d 61 6d 65 6e 74 00
    `);
    const expected = [...mmap, ...new Array<number>(0x500 - mmap.length).fill(0), ...mbi];
    expect(expected).toHaveLength(0x56d);
    expect(Array.from(info.bytes)).toEqual(expected);
    expect(info).toMatchObject({
      address: 0x9500,
      base: 0x9000,
      flags: 0x24f,
      memLower: 639,
      memUpper: 64384,
      bootDevice: 0x8000ffff,
      mmapAddress: 0x9000,
      mmapLength: 168,
      mmapEntryCount: 7,
      modsAddress: 0x9558,
      modsCount: 0,
      cmdlineAddress: 0x9558,
      moduleCmdlineAddresses: [],
      bootLoaderNameAddress: 0x9563,
    });
    expect(QEMU_MBI_FLAGS).toBe(0x24f);
    expect(MBI_SIZE).toBe(88);
    expect(MBI_OFFSETS.mmapAddr).toBe(48);
  });

  it('modules: list entries and their command lines', () => {
    const info = buildMultibootInfo({
      memoryMap: [{ base: 0, length: 0x9fc00, type: 1 }],
      cmdline: 'k',
      bootLoaderName: 'L',
      modules: [
        { start: 0x200000, end: 0x201234, cmdline: 'mod1 a=b' },
        { start: 0x202000, end: 0x202000 },
      ],
      placeAt: { base: 0x10000, size: 0x800 },
    });
    const v = new DataView(info.bytes.buffer);
    const at = (addr: number) => addr - info.base;
    const mbi = at(info.address);
    expect(info.address).toBe(0x10500);
    expect(info.modsCount).toBe(2);
    expect(info.modsAddress).toBe(0x10500 + 0x58); // right after the MBI
    expect(v.getUint32(mbi + MBI_OFFSETS.modsCount, true)).toBe(2);
    expect(v.getUint32(mbi + MBI_OFFSETS.modsAddr, true)).toBe(info.modsAddress);
    const m = at(info.modsAddress);
    expect([v.getUint32(m, true), v.getUint32(m + 4, true), v.getUint32(m + 12, true)]).toEqual([0x200000, 0x201234, 0]);
    expect([v.getUint32(m + 16, true), v.getUint32(m + 20, true)]).toEqual([0x202000, 0x202000]);
    expect(v.getUint32(m + 8, true)).toBe(info.moduleCmdlineAddresses[0]);
    expect(v.getUint32(m + 24, true)).toBe(info.moduleCmdlineAddresses[1]);
    const str = (addr: number) => {
      const o = at(addr);
      return Buffer.from(info.bytes.subarray(o, info.bytes.indexOf(0, o))).toString();
    };
    expect(str(info.cmdlineAddress)).toBe('k');
    expect(str(info.moduleCmdlineAddresses[0]!)).toBe('mod1 a=b');
    expect(str(info.moduleCmdlineAddresses[1]!)).toBe('');
    expect(str(info.bootLoaderNameAddress)).toBe('L');
    expect(info.memLower).toBe(639);
    expect(info.memUpper).toBe(0); // nothing usable at 1 MiB
  });

  it("a memory map longer than QEMU's 0x500 bytes moves the MBI up instead of losing entries", () => {
    const memoryMap = Array.from({ length: 60 }, (_, i) => ({ base: i * 0x10000, length: 0x8000, type: 1 }));
    const info = buildMultibootInfo({ memoryMap, cmdline: 'k', bootLoaderName: 'L', placeAt: DEFAULT_MBI_REGION });
    expect(info.mmapLength).toBe(60 * 24);
    expect(info.address).toBe(0x9000 + 60 * 24);
    const v = new DataView(info.bytes.buffer);
    expect(v.getUint32(info.address - info.base + MBI_OFFSETS.mmapLength, true)).toBe(60 * 24);
    expect(v.getUint32(info.address - info.base + MBI_OFFSETS.mmapAddr, true)).toBe(0x9000);
  });

  it('UTF-8 strings, custom boot device, bigint map entries', () => {
    const info = buildMultibootInfo({
      memoryMap: [{ base: 0n, length: 0x100000000n, type: 1 }],
      cmdline: 'naïve',
      bootLoaderName: 'x',
      bootDevice: 0x80000000,
      placeAt: DEFAULT_MBI_REGION,
    });
    const o = info.cmdlineAddress - info.base;
    expect(Array.from(info.bytes.subarray(o, o + 7))).toEqual([0x6e, 0x61, 0xc3, 0xaf, 0x76, 0x65, 0x00]);
    expect(info.bootDevice).toBe(0x80000000);
    expect(info.memLower).toBe(640);
    expect(info.memUpper).toBe((0x100000000 - 0x100000) / 1024);
  });

  it('rejects bad arguments with MultibootInfoError', () => {
    const map: MemoryMapEntry[] = qemuPcMemoryMap(64 * MiB);
    const base = { memoryMap: map, cmdline: 'x', bootLoaderName: 'y', placeAt: { base: 0x9000, size: 0x1000 } };
    const bad = (over: object, msg: RegExp) => {
      expect(() => buildMultibootInfo({ ...base, ...over })).toThrow(MultibootInfoError);
      expect(() => buildMultibootInfo({ ...base, ...over })).toThrow(msg);
    };
    bad({ placeAt: { base: 0x9000, size: 0x100 } }, /the MBI needs 0x[0-9a-f]+ bytes but placeAt provides 0x100 at 0x9000/);
    bad({ placeAt: { base: 0x9004, size: 0x1000 } }, /placeAt.base 0x9004 must be an 8-byte aligned 32-bit address/);
    bad({ placeAt: { base: 0xfffff000, size: 0x2000 } }, /must be non-empty and below 4 GiB/);
    bad({ placeAt: { base: 0x9000, size: 0 } }, /must be non-empty/);
    bad({ cmdline: 'a\0b' }, /cmdline contains a NUL character/);
    bad({ bootLoaderName: '\0' }, /bootLoaderName contains a NUL character/);
    bad({ memoryMap: [] }, /memoryMap is empty/);
    bad({ memoryMap: [{ base: 0, length: 0, type: 1 }] }, /memoryMap\[0\] \[0x0, \+0x0\) is not a valid 64-bit range/);
    bad({ memoryMap: [{ base: 0xffffffffffffff00n, length: 0x1000n, type: 1 }] }, /memoryMap\[0\]/);
    bad({ memoryMap: [{ base: 0, length: 0x1000, type: -1 }] }, /memoryMap\[0\].type -1/);
    bad({ memoryMap: [{ base: 0.5, length: 0x1000, type: 1 }] }, /not an exact integer/);
    bad({ modules: [{ start: 0x2000, end: 0x1000 }] }, /modules\[0\]/);
    bad({ bootDevice: 2 ** 32 }, /bootDevice/);
  });
});

describe('mem_lower / mem_upper (QEMU multiboot option ROM semantics)', () => {
  it('follows contiguous usable entries from 1 MiB, in any order', () => {
    expect(
      computeMemUpper([
        { base: 0x300000, length: 0x100000, type: 1 },
        { base: 0x100000, length: 0x100000, type: 1 },
        { base: 0x200000, length: 0x100000, type: 1 },
      ]),
    ).toBe(3072);
    // a hole or a reserved range stops it
    expect(computeMemUpper([{ base: 0x100000, length: 0x100000, type: 1 }, { base: 0x300000, length: 0x100000, type: 1 }])).toBe(1024);
    expect(computeMemUpper([{ base: 0x100000, length: 0x100000, type: 1 }, { base: 0x200000, length: 0x100000, type: 2 }])).toBe(1024);
    // an entry that merely contains 1 MiB counts; entries above 4 GiB never do
    expect(computeMemUpper([{ base: 0, length: 0x800000, type: 1 }])).toBe(7168);
    expect(computeMemUpper([{ base: 0x100000, length: 0x200000000, type: 1 }, { base: 0x100000000, length: 0x1000, type: 1 }])).toBe(4194304 - 1024);
    expect(computeMemUpper([{ base: 0, length: 0x9fc00, type: 1 }])).toBe(0);
  });

  it('mem_lower is the usable RAM at 0, at most 640 KiB', () => {
    expect(computeMemLower(qemuPcMemoryMap(64 * MiB))).toBe(639);
    expect(computeMemLower([{ base: 0, length: 0x100000, type: 1 }])).toBe(640);
    expect(computeMemLower([{ base: 0x1000, length: 0x100000, type: 1 }])).toBe(0);
    expect(computeMemLower([{ base: 0, length: 0x9fc00, type: 2 }])).toBe(0);
  });

  it('qemuPcMemoryMap reproduces the values QEMU 7.2 + SeaBIOS gave the hello guest', () => {
    // measured with `qemu-system-x86_64 -kernel hello.elf -m N`
    const measured: Array<[number, number]> = [
      [32, 31616],
      [64, 64384],
      [128, 129920],
      [1024, 1047424],
      [3000, 3070848],
    ];
    for (const [mib, upper] of measured) {
      const map = qemuPcMemoryMap(mib * MiB);
      expect(map).toHaveLength(7);
      expect(computeMemUpper(map)).toBe(upper);
      expect(computeMemLower(map)).toBe(639);
    }
    expect(() => qemuPcMemoryMap(0xe0000000)).toThrow(RangeError);
    expect(() => qemuPcMemoryMap(64 * MiB + 1)).toThrow(RangeError);
  });
});

/* ---- the hello guest's view ------------------------------------------------------- */

/** What guests/hello prints for a given MBI in guest memory (TypeScript port of hello/main.c). */
function renderHello(mem: (addr: number, len: number) => Uint8Array, eax: number, ebx: number): string {
  const dv = (addr: number, len: number) => {
    const b = mem(addr, len);
    return new DataView(b.buffer, b.byteOffset, b.byteLength);
  };
  const u32 = (a: number) => dv(a, 4).getUint32(0, true);
  const u64 = (a: number) => dv(a, 8).getBigUint64(0, true);
  const hex = (v: number | bigint, w: number) => `0x${v.toString(16).padStart(w, '0')}`;
  const cstr = (a: number) => {
    const out: number[] = [];
    for (let i = 0; i < 255; i++) {
      const c = mem(a + i, 1)[0]!;
      if (c === 0) break;
      out.push(c);
    }
    return Buffer.from(out).toString('latin1');
  };
  const names: Record<number, string> = { 1: 'available', 2: 'reserved', 3: 'acpi-reclaimable', 4: 'acpi-nvs', 5: 'bad' };
  const lines = ['hello: Firmament hello guest, 32-bit protected mode', `hello: multiboot magic 0x${eax.toString(16)}`];
  const flags = u32(ebx);
  lines.push(`hello: mbi flags ${hex(flags, 8)}`, `hello: mem_lower ${u32(ebx + 4)} KiB`, `hello: mem_upper ${u32(ebx + 8)} KiB`);
  if (flags & 2) lines.push(`hello: boot_device ${hex(u32(ebx + 12), 8)}`);
  const cl = flags & 4 ? cstr(u32(ebx + 16)) : null;
  if (cl === null) lines.push('hello: cmdline (none)');
  else {
    const firstEnd = cl.indexOf(' ') < 0 ? cl.length : cl.indexOf(' ');
    const slash = cl.slice(0, firstEnd).lastIndexOf('/');
    lines.push(`hello: cmdline "${cl.slice(slash + 1)}"`);
  }
  if (flags & 8) lines.push(`hello: mods_count ${u32(ebx + 20)}`);
  if (flags & 0x40) {
    const len = u32(ebx + 44);
    const addr = u32(ebx + 48);
    const entries: string[] = [];
    for (let off = 0; off + 4 <= len; ) {
      const size = u32(addr + off);
      if (size < 20 || off + 4 + size > len) break;
      const type = u32(addr + off + 20);
      entries.push(
        `size=${size} base=${hex(u64(addr + off + 4), 16)} length=${hex(u64(addr + off + 12), 16)} type=${type} (${names[type] ?? 'other'})`,
      );
      off += size + 4;
    }
    lines.push(`hello: mmap ${entries.length} entries (${len} bytes)`);
    entries.forEach((e, i) => lines.push(`hello: mmap[${i}] ${e}`));
  }
  lines.push('hello: goodbye');
  return lines.map((l) => `${l}\r\n`).join('');
}

describe('the hello guest would print the QEMU golden transcript from our MBI', () => {
  for (const [golden, append] of [
    ['hello.txt', ''],
    ['hello.append.txt', 'greeting=hi mode=oracle'],
  ] as const) {
    it(`${golden} (cmdline "<kernel file> ${append}" as QEMU builds it)`, () => {
      // QEMU passes "<-kernel path> <-append text>"; the guest strips the directory.
      const info = buildMultibootInfo({
        memoryMap: qemuPcMemoryMap(64 * MiB),
        cmdline: `/some/dir/hello.elf ${append}`,
        bootLoaderName: 'firmament',
        placeAt: DEFAULT_MBI_REGION,
      });
      const ram = new Uint8Array(0x10000);
      ram.set(info.bytes, info.base);
      const text = renderHello((a, n) => ram.subarray(a, a + n), 0x2badb002, info.address);
      expect(text).toBe(readFileSync(path.join(EXPECTED_DIR, golden), 'latin1'));
    });
  }
});
