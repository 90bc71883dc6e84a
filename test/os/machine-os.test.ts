/**
 * The lightweight OS on the Firmament machine (Unicorn), where faults QEMU
 * cannot produce are injectable: a stuck RAM range above the firmware's
 * 16 MiB memory-test limit (found by the memtest container, fenced, handed
 * off as type 5), a CMOS checksum error (repaired: fixed) and a dead UART
 * (uart container: fail, console on debugcon). The handoff block is read
 * back from guest memory and checked field by field against
 * docs/handoff-abi.md: header, checksum, memory map, containers, findings,
 * events and the PCR chain.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { parseFault } from '../../machine/platform/faults.js';
import { PcMachine, type MachineExit } from '../../machine/platform/pc.js';
import { buildOciLayout, layoutToFwCfgFiles } from '../../tools/oci-layout.mjs';

const ROOT = path.resolve(import.meta.dirname, '../..');
interface BuildOsModule {
  buildOs(opts?: { quiet?: boolean }): Promise<{ os: string }>;
}
interface BuildFirmwareModule {
  buildFirmware(opts?: { quiet?: boolean }): Promise<{ rom: string }>;
}
const { buildOs } = (await import(pathToFileURL(path.join(ROOT, 'tools/build-os.mjs')).href)) as BuildOsModule;
const { buildFirmware } = (await import(pathToFileURL(path.join(ROOT, 'tools/build-firmware.mjs')).href)) as BuildFirmwareModule;

const STATUS = ['not-run', 'pass', 'fail', 'fixed', 'rejected', 'timeout'];

interface Handoff {
  header: { magic: number; version: number; headerSize: number; totalSize: number; checksum: number; result: number; bootinfo: bigint; abi: number; postFlags: number; resolved: number; osStart: bigint; osEnd: bigint; counts: number[] };
  checksumOk: boolean;
  memmap: { base: bigint; length: bigint; type: number }[];
  containers: { name: string; digest: string; status: string; exitCode: number; firstFinding: number; findingCount: number; fixes: number; memoryLimit: bigint; timeLimit: number; grants: number; firstEvent: number; eventCount: number }[];
  findings: { container: number; severity: number; source: number; code: number; detail: bigint[]; text: string }[];
  events: { index: number; kind: number; container: number; size: number; digest: string; description: string }[];
  pcr: string;
}

/** Parser for the handoff block (docs/handoff-abi.md), reading guest-physical memory. */
function parseHandoff(read: (addr: number, len: number) => Uint8Array, addr: number): Handoff {
  const h = Buffer.from(read(addr, 0x100));
  const totalSize = h.readUInt32LE(8);
  const all = Buffer.from(read(addr, totalSize));
  let sum = 0;
  for (let i = 0; i < totalSize; i++) sum = (sum + (i >= 12 && i < 16 ? 0 : all[i]!)) >>> 0;
  const table = (off: number) => {
    const a = Number(h.readBigUInt64LE(off));
    const n = h.readUInt32LE(off + 8);
    const size = h.readUInt32LE(off + 12);
    expect(a).toBeGreaterThanOrEqual(addr + 0x100);
    expect(a + n * size).toBeLessThanOrEqual(addr + totalSize);
    return Array.from({ length: n }, (_, i) => all.subarray(a - addr + i * size, a - addr + (i + 1) * size));
  };
  const cstr = (b: Buffer) => b.toString('latin1').replace(/\0.*$/s, '');
  return {
    header: {
      magic: h.readUInt32LE(0), version: h.readUInt16LE(4), headerSize: h.readUInt16LE(6), totalSize, checksum: h.readUInt32LE(12),
      bootinfo: h.readBigUInt64LE(0x10), result: h.readUInt32LE(0x18), abi: h.readUInt32LE(0x1c),
      counts: [0x80, 0x84, 0x88, 0x8c, 0x90].map((o) => h.readUInt32LE(o)),
      postFlags: h.readUInt32LE(0x94), resolved: h.readUInt32LE(0x98), osStart: h.readBigUInt64LE(0xa0), osEnd: h.readBigUInt64LE(0xa8),
    },
    checksumOk: sum === h.readUInt32LE(12),
    memmap: table(0x20).map((e) => ({ base: e.readBigUInt64LE(0), length: e.readBigUInt64LE(8), type: e.readUInt32LE(16) })),
    containers: table(0x30).map((e) => ({
      name: cstr(e.subarray(0, 32)), digest: `sha256:${e.subarray(32, 64).toString('hex')}`, status: STATUS[e.readUInt32LE(0x40)] ?? '?',
      exitCode: e.readInt32LE(0x44), firstFinding: e.readUInt32LE(0x48), findingCount: e.readUInt32LE(0x4c), fixes: e.readUInt32LE(0x50),
      memoryLimit: e.readBigUInt64LE(0x58), timeLimit: e.readUInt32LE(0x60), grants: e.readUInt32LE(0x64),
      firstEvent: e.readUInt32LE(0x68), eventCount: e.readUInt32LE(0x6c),
    })),
    findings: table(0x40).map((e) => ({
      container: e.readUInt32LE(0), severity: e[4]!, source: e[5]!, code: e.readUInt32LE(8),
      detail: [0, 1, 2, 3].map((i) => e.readBigUInt64LE(0x10 + 8 * i)), text: cstr(e.subarray(0x30, 0x100)),
    })),
    events: table(0x50).map((e) => ({
      index: e.readUInt32LE(0), kind: e.readUInt32LE(4), container: e.readUInt32LE(8), size: e.readUInt32LE(12),
      digest: e.subarray(16, 48).toString('hex'), description: cstr(e.subarray(48, 96)),
    })),
    pcr: h.subarray(0x60, 0x80).toString('hex'),
  };
}

describe('lightweight OS on the Firmament machine with injected faults', () => {
  let console_ = '';
  let exit: MachineExit;
  let handoff: Handoff;
  let layout: Awaited<ReturnType<typeof buildOciLayout>>;

  beforeAll(async () => {
    const rom = (await buildFirmware({ quiet: true })).rom;
    const osElf = (await buildOs({ quiet: true })).os;
    layout = await buildOciLayout({ quiet: true });
    const m = new PcMachine({
      memBytes: 64 << 20,
      cpus: 1,
      rom: new Uint8Array(readFileSync(rom)),
      faults: ['ram:0x3000000+0x2000:stuck', 'cmos-checksum', 'uart-dead'].map(parseFault),
      seed: 0,
      pace: 'virtual',
      fwCfgFiles: [
        { name: 'opt/firmament/next-stage', data: new Uint8Array(readFileSync(osElf)) },
        ...layoutToFwCfgFiles(layout.layoutDir).map((f) => ({ name: f.name, data: new Uint8Array(f.data) })),
      ],
    });
    try {
      exit = await m.run({ timeoutMs: 120_000 });
      console_ = m.serial + m.debugcon.text();
      const at = /handoff: block v1 at 0x([0-9a-f]+),/.exec(console_);
      if (!at) throw new Error(`no handoff line in:\n${console_}`);
      handoff = parseHandoff((a, n) => m.memory.read(a, n), parseInt(at[1]!, 16));
    } finally {
      m.close();
    }
  }, 180_000);

  it('finds what the firmware could not, repairs what it can, and exits with "failures" (0x10)', () => {
    expect(exit).toMatchObject({ reason: 'debug-exit', code: 0x21 });
    expect(console_).toContain('[POST 0xE0] UART dead');                    // the log moved to debugcon
    expect(console_).toMatch(/memtest: finding error container 0x0501: bad RAM \[mem 0x3000000-0x3001fff\], lowest bad address 0x3000000, bits 0x[0-9a-f]+/);
    expect(console_).toContain('memtest: finding info os 0x0015: fix applied: [mem 0x3000000-0x3001fff] fenced, handed off as type 5');
    expect(console_).toContain('container memtest: fail');
    expect(console_).toContain('container cmos: fixed');
    expect(console_).toMatch(/uart: finding error container 0x0101: COM1 scratch register: wrote 0x55, read 0x[0-9a-f]{2}/);
    expect(console_).toContain('containers: cmos fixed, fwcfg pass, memtest fail, timer pass, uart fail');
    expect(console_).toContain('  [mem 0x0000000003000000-0x0000000003001fff] bad (fenced)');
    expect(console_.trimEnd().endsWith('handoff: no hypervisor, stopping')).toBe(true);
  });

  it('hands off a well-formed block: header, checksum, result, counts, firmware flags', () => {
    const h = handoff.header;
    expect(h.magic).toBe(0x4f484d46);
    expect(Buffer.from([0x46, 0x4d, 0x48, 0x4f]).readUInt32LE(0)).toBe(h.magic);   // "FMHO"
    expect(h.version).toBe(1);
    expect(h.headerSize).toBe(0x100);
    expect(handoff.checksumOk).toBe(true);
    expect(h.bootinfo).toBe(0x8000n);
    expect(h.abi).toBe(1);
    expect(h.result).toBe(1);
    expect(h.counts).toEqual([2, 2, 1, 0, 0]);             // pass, fail, fixed, rejected, timeout
    expect(h.postFlags & 0x21).toBe(0x21);                 // UART dead (bit 0), CMOS checksum (bit 5)
    expect(h.resolved).toBe(0x20);                         // cmos resolved the checksum error
    expect(h.osStart).toBe(0x200000n);
  });

  it('memory map: the fenced range is type 5, the OS image type 0x1000, nothing overlaps', () => {
    const mm = handoff.memmap;
    expect(mm).toContainEqual({ base: 0x3000000n, length: 0x2000n, type: 5 });
    expect(mm.find((e) => e.type === 0x1000)?.base).toBe(handoff.header.osStart);
    for (let i = 1; i < mm.length; i++) expect(mm[i]!.base).toBeGreaterThanOrEqual(mm[i - 1]!.base + mm[i - 1]!.length);
    const usable = mm.filter((e) => e.type === 1);
    for (const u of usable) expect(u.base + u.length <= 0x3000000n || u.base >= 0x3002000n).toBe(true);
  });

  it('containers and findings tables agree with the layout and the console', () => {
    expect(handoff.containers.map((c) => [c.name, c.status])).toEqual([
      ['cmos', 'fixed'], ['fwcfg', 'pass'], ['memtest', 'fail'], ['timer', 'pass'], ['uart', 'fail'],
    ]);
    for (const [i, c] of handoff.containers.entries()) {
      expect(c.digest).toBe(layout.containers[i]!.manifestDigest);
      expect(c.eventCount).toBe(3);
      for (let f = c.firstFinding; f < c.firstFinding + c.findingCount; f++) expect(handoff.findings[f]!.container).toBe(i);
    }
    const memtest = handoff.containers[2]!;
    expect(memtest.exitCode).toBe(1);                      // fail: fenced, not repaired
    expect(memtest.fixes).toBe(1);
    expect(memtest.grants & 1).toBe(1);                   // ram-test
    const bad = handoff.findings.find((f) => f.code === 0x0501)!;
    expect(bad.source).toBe(0);
    expect(bad.severity).toBe(2);
    expect(bad.detail.slice(0, 3)).toEqual([0x3000000n, 0x2000n, 0x3000000n]);
    const fence = handoff.findings.find((f) => f.code === 0x15 && f.container === 2)!;
    expect(fence.source).toBe(1);
    expect(fence.detail.slice(0, 3)).toEqual([1n, 0x3000000n, 0x2000n]);   // FIX_FENCE_RAM, base, length
    expect(handoff.containers[4]!.exitCode).toBe(1);
  });

  it('the event log: index.json then manifest/config/layer per container, PCR = sha256 chain', () => {
    const ev = handoff.events;
    expect(ev.length).toBe(16);
    expect(ev[0]).toMatchObject({ index: 0, kind: 0, container: 0xffffffff, description: 'oci index.json' });
    const idx = readFileSync(path.join(layout.layoutDir, 'index.json'));
    expect(ev[0]!.digest).toBe(createHash('sha256').update(idx).digest('hex'));
    for (const [i, c] of layout.containers.entries()) {
      expect(ev.slice(1 + 3 * i, 4 + 3 * i).map((e) => [e.kind, e.container, `sha256:${e.digest}`, e.description])).toEqual([
        [1, i, c.manifestDigest, `${c.name} manifest`], [2, i, c.configDigest, `${c.name} config`], [3, i, c.layerDigest, `${c.name} layer`],
      ]);
    }
    let pcr = Buffer.alloc(32);
    for (const e of ev) pcr = createHash('sha256').update(Buffer.concat([pcr, Buffer.from(e.digest, 'hex')])).digest();
    expect(handoff.pcr).toBe(pcr.toString('hex'));
    expect(console_).toContain(`event log: pcr sha256:${handoff.pcr}`);
  });
});
