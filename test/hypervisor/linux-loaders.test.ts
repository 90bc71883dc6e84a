import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createGuestMachine } from '../../vmm/run-guests.js';
import { buildImages } from '../../tools/build-images.mjs';
import { parseMultibootImage, qemuPcMemoryMap } from '../../hypervisor/multiboot/index.js';
import { identifyKernel, describeKernel, LinuxImageError, LinuxLoadError } from '../../hypervisor/linux/index.js';
import { planBzImage, HDR, BP, ZERO_PAGE_ADDR } from '../../hypervisor/linux/bzimage.js';
import { planPvh, SI, START_INFO_ADDR } from '../../hypervisor/linux/pvh.js';
import type { GuestFileSpec } from '../../hypervisor/guest-files.js';

const MiB = 1024 * 1024;
const root = resolve(import.meta.dirname, '../..');
const outDir = join(root, '.cache/test-asm/linux-loaders');

/** test/fixtures/linux-boot-probe.S as a PVH ELF (note included) and as flat bytes for a bzImage. */
function buildProbe(): { elf: Uint8Array; flat: Uint8Array } {
  mkdirSync(outDir, { recursive: true });
  const o = join(outDir, 'probe.o');
  const elf = join(outDir, 'probe.elf');
  const bin = join(outDir, 'probe.bin');
  const ld = join(outDir, 'probe.ld');
  writeFileSync(ld, 'ENTRY(_start)\nSECTIONS {\n  . = 0x100000;\n  .text : { *(.text) }\n  .note : { *(.note.*) }\n}\n');
  execFileSync('gcc', ['-c', '-m32', '-nostdlib', '-o', o, join(root, 'test/fixtures/linux-boot-probe.S')], { stdio: 'pipe' });
  execFileSync('ld', ['-m', 'elf_i386', '-N', '-T', ld, '--no-warn-rwx-segments', '-o', elf, o], { stdio: 'pipe' });
  execFileSync('objcopy', ['-O', 'binary', '-j', '.text', elf, bin], { stdio: 'pipe' });
  return { elf: new Uint8Array(readFileSync(elf)), flat: new Uint8Array(readFileSync(bin)) };
}

/** A bzImage around `payload`: boot sector + one setup sector holding the setup header, then the protected-mode kernel. */
function bzImage(payload: Uint8Array, fields: { version?: number; loadflags?: number; prefAddress?: number; initSize?: number } = {}): Uint8Array {
  const b = new Uint8Array(1024 + payload.length);
  const dv = new DataView(b.buffer);
  b[HDR.setupSects] = 1;
  dv.setUint16(0x1fe, 0xaa55, true);
  b[HDR.jump] = 0xeb;
  b[HDR.jump + 1] = 0x66; // the header runs to 0x268
  dv.setUint32(HDR.header, 0x53726448, true);
  dv.setUint16(HDR.version, fields.version ?? 0x020f, true);
  b[HDR.loadflags] = fields.loadflags ?? 1;
  dv.setUint32(HDR.code32Start, 0x100000, true);
  dv.setUint32(HDR.initrdAddrMax, 0x7fffffff, true);
  b[HDR.relocatableKernel] = 1;
  dv.setUint32(HDR.cmdlineSize, 2047, true);
  dv.setBigUint64(HDR.prefAddress, BigInt(fields.prefAddress ?? 0x100000), true);
  dv.setUint32(HDR.initSize, fields.initSize ?? 0x10000, true);
  b.set(payload, 1024);
  return b;
}

async function runGuest(spec: GuestFileSpec): Promise<{ serial: string; code: number }> {
  const { machine, hypervisor, vms } = createGuestMachine([spec], { pcpus: 1, pace: 'virtual' });
  try {
    const exit = await machine.run({ timeoutMs: 60_000 });
    return { serial: vms[0]!.serial, code: exit.code };
  } finally {
    hypervisor.close();
    machine.close();
  }
}

const file = (name: string, bytes: Uint8Array | string): string => {
  mkdirSync(outDir, { recursive: true });
  const p = join(outDir, name);
  writeFileSync(p, bytes);
  return p;
};

describe('Linux loaders (hypervisor/linux/)', () => {
  const probe = buildProbe();
  const map = qemuPcMemoryMap(64 * MiB);

  it('names every format: Multiboot, bzImage with its protocol, PVH with its entry, and what else a file is', () => {
    expect(describeKernel(identifyKernel(bzImage(probe.flat), 'k'))).toBe('a Linux bzImage (boot protocol 2.15)');
    expect(describeKernel(identifyKernel(probe.elf, 'k'))).toBe('an ELF vmlinux with a PVH entry note (entry 0x100000)');
    expect(describeKernel(identifyKernel(Uint8Array.from([0x1f, 0x8b, 8, 0]), 'k'))).toMatch(/^gzip-compressed data/);
    expect(describeKernel(identifyKernel(new TextEncoder().encode('070701000000'), 'k'))).toMatch(/^a cpio archive/);
  });

  it('a bzImage given where only Multiboot is parsed is named, with what is supported', () => {
    expect(() => parseMultibootImage(bzImage(probe.flat), 'vmlinuz')).toThrow(
      /vmlinuz: offset 0x0: multiboot header not found: .*; the file is a Linux bzImage \(boot protocol 2\.15\); supported: a Multiboot v1 kernel .*, a Linux bzImage .*, or an ELF vmlinux with a PVH entry note/,
    );
  });

  it('bzImage: boot_params carries the setup header, loader fields, e820, command line and initrd', () => {
    const initrd = new Uint8Array(5000).fill(7);
    const plan = planBzImage(bzImage(probe.flat), 'vmlinuz', { cmdline: 'console=ttyS0', initrd: { name: 'initrd.img', bytes: initrd }, ramBytes: 64 * MiB, memoryMap: map });
    expect(plan.entry).toBe(0x100000);
    expect(plan.esi).toBe(ZERO_PAGE_ADDR);
    const zp = plan.writes.find((w) => w.what === 'boot_params')!;
    expect(zp.gpa).toBe(ZERO_PAGE_ADDR);
    const dv = new DataView(zp.bytes.buffer);
    expect(dv.getUint32(HDR.header, true)).toBe(0x53726448);
    expect(dv.getUint16(HDR.version, true)).toBe(0x020f);
    expect(zp.bytes[HDR.typeOfLoader]).toBe(0xff);
    expect(zp.bytes[HDR.loadflags]! & 0x81).toBe(0x81); // LOADED_HIGH | CAN_USE_HEAP
    const cmdAt = dv.getUint32(HDR.cmdLinePtr, true);
    expect(plan.writes.find((w) => w.gpa === cmdAt)!.bytes).toEqual(new TextEncoder().encode('console=ttyS0\0'));
    // The initrd: as high as RAM allows below the reserved top 128 KiB, page-aligned.
    const rdAt = dv.getUint32(HDR.ramdiskImage, true);
    expect(dv.getUint32(HDR.ramdiskSize, true)).toBe(5000);
    expect(rdAt % 4096).toBe(0);
    expect(rdAt + 5000).toBeLessThanOrEqual(64 * MiB - 0x20000);
    expect(rdAt + 5000 + 4096).toBeGreaterThan(64 * MiB - 0x20000);
    expect(zp.bytes[BP.e820Entries]).toBe(map.length);
    expect(dv.getBigUint64(BP.e820Table + 3 * 20, true)).toBe(0x100000n);
    expect(dv.getUint32(BP.e820Table + 3 * 20 + 16, true)).toBe(1);
  });

  it('bzImage: refuses old protocols, zImages, too little RAM, modules and over-long command lines, naming the field', () => {
    const opts = { cmdline: '', ramBytes: 64 * MiB, memoryMap: map };
    expect(() => planBzImage(bzImage(probe.flat, { version: 0x0205 }), 'old', opts)).toThrow(LinuxImageError);
    expect(() => planBzImage(bzImage(probe.flat, { version: 0x0205 }), 'old', opts)).toThrow('old: offset 0x206: setup header version 0x205 is older than 2.06');
    expect(() => planBzImage(bzImage(probe.flat, { loadflags: 0 }), 'z', opts)).toThrow('z: offset 0x211: loadflags lacks LOADED_HIGH');
    expect(() => planBzImage(bzImage(probe.flat, { prefAddress: 0x1000000, initSize: 0x4000000 }), 'big', opts)).toThrow(
      'big: the kernel needs RAM up to 0x5000000 (pref_address 0x1000000 + init_size 0x4000000); the VM has 0x4000000 bytes: give it more with --mem',
    );
    expect(() => planBzImage(bzImage(probe.flat), 'k', { ...opts, modules: [{ name: 'm', bytes: new Uint8Array(1) }] })).toThrow(LinuxLoadError);
    expect(() => planBzImage(bzImage(probe.flat), 'k', { ...opts, cmdline: 'x'.repeat(2048) })).toThrow("the command line is 2048 bytes; the kernel's cmdline_size (2047) allows 2047");
    expect(() => planBzImage(bzImage(probe.flat), 'k', { ...opts, initrd: { name: 'huge.img', bytes: new Uint8Array(63 * MiB) } })).toThrow(/^huge\.img: initrd of 66060288 bytes does not fit in guest RAM/);
  });

  it('PVH: hvm_start_info version 1 with the memory map, command line and modules (the initrd first)', () => {
    const plan = planPvh(probe.elf, 'vmlinux', {
      cmdline: 'root=/dev/ram0',
      initrd: { name: 'initrd', bytes: new Uint8Array(100) },
      modules: [{ name: 'mod', bytes: new Uint8Array(200), cmdline: 'a b' }],
      ramBytes: 64 * MiB,
      memoryMap: map,
    });
    expect(plan.entry).toBe(0x100000);
    expect(plan.ebx).toBe(START_INFO_ADDR);
    const si = plan.writes.find((w) => w.what === 'hvm_start_info')!;
    const dv = new DataView(si.bytes.buffer);
    expect(dv.getUint32(SI.magic, true)).toBe(0x336ec578);
    expect(dv.getUint32(SI.version, true)).toBe(1);
    expect(dv.getUint32(SI.nrModules, true)).toBe(2);
    expect(dv.getUint32(SI.memmapEntries, true)).toBe(map.length);
    expect(dv.getBigUint64(SI.rsdpPaddr, true)).toBe(0xf5a00n);
  });

  it('PVH: a bad note or a segment outside RAM is refused with the field', () => {
    const opts = { cmdline: '', ramBytes: 64 * MiB, memoryMap: map };
    // Entry in the note (namesz 4, descsz 4, type 18, "Xen\0", entry) moved outside every segment.
    const moved = probe.elf.slice();
    const dv = new DataView(moved.buffer);
    for (let i = 0; i + 4 <= moved.length; i += 4) if (dv.getUint32(i, true) === 18 && dv.getUint32(i + 4, true) === 0x006e6558) dv.setUint32(i + 8, 0x900000, true);
    expect(() => planPvh(moved, 'vmlinux', opts)).toThrow('vmlinux: offset 0x0: XEN_ELFNOTE_PHYS32_ENTRY 0x900000 is outside every PT_LOAD segment');
    expect(() => planPvh(probe.elf, 'vmlinux', { ...opts, ramBytes: 0x100000 + 0x40 })).toThrow(/vmlinux: offset 0x[0-9a-f]+: program header 0: p_paddr range \[0x100000, 0x[0-9a-f]+\) is outside guest RAM/);
  });

  it('runs a bzImage with --cmdline and --initrd: the kernel sees them through boot_params', async () => {
    const r = await runGuest({ path: file('vmlinuz', bzImage(probe.flat)), memBytes: 64 * MiB, vcpus: 1, cmdline: 'console=ttyS0 quiet', initrd: file('initrd.img', 'INITRD-BYTES') });
    expect(r.serial).toBe(`bz|console=ttyS0 quiet|${map.length}|INITRD-BYTES|`);
    expect(r.code).toBe(1); // isa-debug-exit(0): QEMU's status (0 << 1) | 1
  });

  it('a Linux guest finds the BIOS Data Area SeaBIOS leaves: COM1, the EBDA segment and 639 KiB of base memory', () => {
    const { machine, hypervisor, vms } = createGuestMachine([{ path: file('vmlinuz-bda', bzImage(probe.flat)), memBytes: 64 * MiB, vcpus: 1 }], { pcpus: 1, pace: 'virtual' });
    try {
      const bda = new DataView(vms[0]!.vmMemory.read(0x400, 0x20).buffer);
      expect(bda.getUint16(0x00, true)).toBe(0x3f8);
      expect(bda.getUint16(0x0e, true)).toBe(0x9fc0);
      expect(bda.getUint16(0x13, true)).toBe(639);
      expect(vms[0]!.vmMemory.read(0x9fc00, 1)[0]).toBe(1);
    } finally {
      hypervisor.close();
      machine.close();
    }
  });

  it('runs a PVH vmlinux with --initrd and --module FILE,CMDLINE: modules in order, each with its command line', async () => {
    const r = await runGuest({
      path: file('vmlinux', probe.elf),
      memBytes: 64 * MiB,
      vcpus: 1,
      cmdline: 'root=/dev/ram0',
      initrd: file('initrd.cpio', 'RD'),
      modules: [{ path: file('env', 'ENV=1'), cmdline: 'env file' }],
    });
    expect(r.serial).toBe(`pvh|root=/dev/ram0|${map.length}|RD:|ENV=1:env file|`);
    expect(r.code).toBe(1); // isa-debug-exit(0): QEMU's status (0 << 1) | 1
  });

  it('Multiboot: --initrd and --module become modules after the kernel, page-aligned, listed in the MBI', async () => {
    const images = (await buildImages({ quiet: true })).guests;
    const { machine, hypervisor, vms } = createGuestMachine(
      [{ path: images['hello']!, memBytes: 64 * MiB, vcpus: 1, initrd: file('m0', 'FIRST'), modules: [{ path: file('m1', 'SECOND'), cmdline: 'arg' }] }],
      { pcpus: 1, pace: 'virtual' },
    );
    try {
      const mem = vms[0]!.vmMemory;
      const ebx = Number(vms[0]!.vcpus[0]!.cpu.engine.readReg(37 /* RBX */));
      const mbi = new DataView(mem.read(ebx, 88).buffer);
      expect(mbi.getUint32(0, true) & 8).toBe(8);
      expect(mbi.getUint32(20, true)).toBe(2);
      const list = new DataView(mem.read(mbi.getUint32(24, true), 32).buffer);
      const [s0, e0, , , s1, e1, c1] = [0, 4, 8, 12, 16, 20, 24].map((o) => list.getUint32(o, true));
      expect(new TextDecoder().decode(mem.read(s0!, e0! - s0!))).toBe('FIRST');
      expect(new TextDecoder().decode(mem.read(s1!, e1! - s1!))).toBe('SECOND');
      expect(s0! % 4096).toBe(0);
      expect(s1! % 4096).toBe(0);
      expect(new TextDecoder().decode(mem.read(c1!, 3))).toBe('arg');
      const plan = parseMultibootImage(new Uint8Array(readFileSync(images['hello']!)), 'hello');
      expect(s0!).toBeGreaterThanOrEqual(Math.max(...plan.segments.map((s) => s.paddr + s.memSize)));
    } finally {
      hypervisor.close();
      machine.close();
    }
  });
});
