/**
 * The lightweight OS (firmware/os) under real QEMU: firmware.rom + os.elf as
 * the next stage + an OCI layout served through fw_cfg (layoutToFwCfgFiles).
 * Checks the COM1 report, container statuses, isolation (time limit, page
 * fault, port grants), digest verification, fencing, the measured-boot log
 * and the handoff/exit protocol (VMCALL -> #UD -> isa-debug-exit).
 */
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildOciLayout, corruptLayout, layoutToFwCfgFiles, writeFwCfgFiles } from '../../tools/oci-layout.mjs';

const ROOT = path.resolve(import.meta.dirname, '../..');
interface BuildOsModule {
  buildOs(opts?: { force?: boolean; quiet?: boolean; outDir?: string }): Promise<{ os: string; osSha256: string; containers: Record<string, string>; built: boolean }>;
}
interface BuildFirmwareModule {
  buildFirmware(opts?: { force?: boolean; quiet?: boolean }): Promise<{ rom: string; payload: string }>;
}
const { buildOs } = (await import(pathToFileURL(path.join(ROOT, 'tools/build-os.mjs')).href)) as BuildOsModule;
const { buildFirmware } = (await import(pathToFileURL(path.join(ROOT, 'tools/build-firmware.mjs')).href)) as BuildFirmwareModule;

const QEMU = 'qemu-system-x86_64';
const hasQemu = spawnSync(QEMU, ['--version'], { stdio: 'ignore' }).status === 0;
const sha256 = (b: Uint8Array | string): string => createHash('sha256').update(b).digest('hex');

interface Run {
  out: string;
  lines: string[];
  /** OS part: everything from the OS banner on. */
  os: string[];
  status: number | null;
  killed: boolean;
}

let rom = '';
let osElf = '';
let tmp = '';

async function boot(layoutDir: string | null, timeoutMs = 20_000): Promise<Run> {
  const dir = mkdtempSync(path.join(tmp, 'fw-'));
  const fw = layoutDir ? await writeFwCfgFiles(layoutToFwCfgFiles(layoutDir), dir) : [];
  const args = [
    '-M', 'pc', '-m', '64', '-bios', rom,
    // our layouts can exceed QEMU's default of 32 fw_cfg file slots (QEMU adds ~12 itself)
    '-global', 'fw_cfg_io.x-file-slots=256',
    '-fw_cfg', `name=opt/firmament/next-stage,file=${osElf}`, ...fw,
    '-serial', 'stdio', '-display', 'none', '-no-reboot',
    '-device', 'isa-debug-exit,iobase=0xf4,iosize=0x04',
  ];
  return new Promise((resolve, reject) => {
    const child = spawn(QEMU, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let killed = false;
    const hard = setTimeout(() => {
      killed = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.stdout.setEncoding('latin1');
    child.stdout.on('data', (d: string) => (out += d));
    child.stderr.resume();
    child.on('error', (e) => {
      clearTimeout(hard);
      reject(e);
    });
    child.on('close', (code) => {
      clearTimeout(hard);
      const lines = out.replace(/\r\n$/, '').split('\r\n');
      const start = lines.findIndex((l) => l.startsWith('firmament-os '));
      resolve({ out, lines, os: start >= 0 ? lines.slice(start) : [], status: killed ? null : code, killed });
    });
  });
}

/** PCR chain over the digests, as the OS computes it. */
function pcrOf(digests: string[]): string {
  let pcr = Buffer.alloc(32);
  for (const d of digests) pcr = createHash('sha256').update(Buffer.concat([pcr, Buffer.from(d, 'hex')])).digest();
  return pcr.toString('hex');
}

function blobHex(layoutDir: string, digest: string): Buffer {
  return readFileSync(path.join(layoutDir, 'blobs', 'sha256', digest.replace('sha256:', '')));
}

describe.skipIf(!hasQemu)('lightweight OS under QEMU', () => {
  let layout = '';
  let containers: { name: string; manifestDigest: string; configDigest: string; layerDigest: string }[] = [];
  let first: Run;

  beforeAll(async () => {
    tmp = mkdtempSync(path.join(os.tmpdir(), 'firmament-os-'));
    rom = (await buildFirmware({ quiet: true })).rom;
    osElf = (await buildOs({ quiet: true })).os;
    const l = await buildOciLayout({ quiet: true });
    layout = l.layoutDir;
    containers = l.containers;
    first = await boot(layout);
  }, 120_000);

  afterAll(() => {
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  it('default boot: every container passes (cmos repairs the checksum), then the handoff', () => {
    const r = first;
    expect(r.killed).toBe(false);
    expect(r.status).toBe(1);                               // isa-debug-exit value 0
    expect(r.out.endsWith('\r\n')).toBe(true);
    expect(r.os[0]).toBe('firmament-os 0.1: boot-info v1 at 0x8000, 64 MiB, 6 e820 entries, POST flags 0x20');
    expect(r.os).toContain('os: sha256 self-test: 5 known-answer vectors ok');
    expect(r.os).toContain('os: GDT, TSS (IST: #DF, NMI, #MC), IDT 256 vectors, SYSCALL/SYSRET, NX');
    expect(r.os.join('\n')).not.toMatch(/PANIC|: rejected|killed/);
    expect(containers.map((c) => c.name)).toEqual(['cmos', 'fwcfg', 'memtest', 'timer', 'uart']);
    for (const c of containers) {
      expect(r.os).toContain(`container ${c.name}: manifest ${c.manifestDigest}`);
      expect(r.os.some((l) => l.startsWith(`container ${c.name}: verified (manifest, config, layer), `))).toBe(true);
    }
    // QEMU never writes the CMOS checksum: cmos finds it bad, the OS repairs it, the re-check passes.
    const cmos = r.os.filter((l) => l.startsWith('  cmos: '));
    expect(cmos).toEqual([
      '  cmos: finding error container 0x0301: CMOS checksum bad: stored 0x0000, computed 0x01d5',
      '  cmos: requesting checksum repair',
      '  cmos: finding info os 0x0015: fix applied: CMOS checksum 0x0000 -> 0x01d5 (0x2E/0x2F)',
      '  cmos: re-check passed: stored 0x01d5 = computed 0x01d5',
    ]);
    expect(r.os).toContain('container cmos: fixed');
    expect(r.os).toContain('  uart: COM1: scratch register ok (5 patterns), MCR loopback ok (4 modem lines, 6 bytes)');
    expect(r.os).toContain('  timer: IRQ0 ticks advancing (20 observed), PIT channel 0 counting down from 1193');
    expect(r.os).toContain('  memtest: no faults');
    expect(r.os.some((l) => /^ {2}fwcfg: signature QEMU, features 0x3 \(DMA\), \d+ files \(15 container blobs\), directory sane$/.test(l))).toBe(true);
    expect(r.os).toContain('containers: cmos fixed, fwcfg pass, memtest pass, timer pass, uart pass');
    expect(r.os).toContain('post report: 5 containers, 4 pass, 1 fixed, 0 fail, 0 timeout, 0 rejected, 2 findings');
    expect(r.os).toContain('post report: firmware POST flags 0x20, resolved by containers 0x20');
    expect(r.os.some((l) => /^handoff: block v1 at 0x[0-9a-f]+, \d+ bytes, result 0; VMCALL RAX=0x4d524946 RBX=0x[0-9a-f]+$/.test(l))).toBe(true);
    expect(r.os[r.os.length - 1]).toBe('handoff: no hypervisor, stopping');
  });

  it('memtest is lent all free RAM except the OS and hands the map off with the OS image split out', () => {
    const r = first;
    const m = /^ {2}memtest: March C- over (\d+) ranges?, (\d+) KiB$/.exec(r.os.find((l) => l.startsWith('  memtest: March')) ?? '');
    expect(m).not.toBeNull();
    expect(Number(m![2])).toBeGreaterThan(60 * 1024);       // nearly all of 64 MiB
    const osLine = r.os.find((l) => l.startsWith('os: own page tables: image [mem '))!;
    const [, osStart, osEnd] = /\[mem 0x([0-9a-f]+)-0x([0-9a-f]+)\]/.exec(osLine)!;
    const tested = r.os.filter((l) => /^ {2}memtest: {3}\[mem /.test(l)).map((l) => {
      const [, a, b] = /0x([0-9a-f]+)-0x([0-9a-f]+)/.exec(l)!;
      return [BigInt(`0x${a}`), BigInt(`0x${b}`)] as const;
    });
    for (const [a, b] of tested) expect(b < BigInt(`0x${osStart}`) || a > BigInt(`0x${osEnd}`)).toBe(true);
    // ... and only inside RAM the firmware reported usable
    const usable = r.lines.filter((l) => /^ {2}e820: \[mem .*\] usable$/.test(l)).map((l) => {
      const [, a, b] = /0x([0-9a-f]+)-0x([0-9a-f]+)/.exec(l)!;
      return [BigInt(`0x${a}`), BigInt(`0x${b}`)] as const;
    });
    expect(usable.length).toBe(2);
    for (const [a, b] of tested) expect(usable.some(([ua, ub]) => a >= ua && b <= ub)).toBe(true);
    const map = r.os.slice(r.os.findIndex((l) => l.startsWith('memory map: ')) + 1).filter((l) => l.startsWith('  [mem '));
    expect(map).toContain('  [mem 0x0000000000000000-0x000000000001ffff] reserved');
    expect(map.some((l) => l.endsWith('] os'))).toBe(true);
    expect(map.some((l) => l.includes('bad'))).toBe(false);
  });

  it('the event log measures index.json and every verified blob; the PCR chain matches', () => {
    const r = first;
    const idx = readFileSync(path.join(layout, 'index.json'));
    const expected = [sha256(idx), ...containers.flatMap((c) => [c.manifestDigest, c.configDigest, c.layerDigest].map((d) => d.slice(7)))];
    const events = r.os.filter((l) => /^ {2}event \d+: /.test(l));
    expect(events.length).toBe(16);
    expect(events.map((l) => /sha256:([0-9a-f]{64})/.exec(l)![1])).toEqual(expected);
    expect(events[0]).toMatch(/ oci index\.json$/);
    expect(events[3]).toMatch(/ cmos layer$/);
    expect(r.os).toContain(`event log: pcr sha256:${pcrOf(expected)}`);
  });

  it('is reproducible: a fresh layout build gives the same digests, and two boots the same report and PCR', async () => {
    const again = await buildOciLayout({ quiet: true, force: true, layoutDir: path.join(tmp, 'layout-again') });
    expect(again.containers).toEqual(containers);
    expect(readFileSync(path.join(again.layoutDir, 'index.json'))).toEqual(readFileSync(path.join(layout, 'index.json')));
    const second = await boot(again.layoutDir);
    expect(second.status).toBe(1);
    const pcr = (x: Run) => x.os.find((l) => l.startsWith('event log: pcr '));
    expect(pcr(second)).toBeDefined();
    expect(pcr(second)).toBe(pcr(first));
    expect(second.out).toBe(first.out);                     // the whole COM1 transcript is deterministic
  });

  it('a corrupted layer blob: that container is rejected with the digest mismatch, the others still run', async () => {
    const bad = await corruptLayout({ layoutDir: layout, outDir: path.join(tmp, 'corrupt'), container: 'timer', blob: 'layer' });
    const actual = sha256(blobHex(bad.layoutDir, bad.digest));
    const r = await boot(bad.layoutDir);
    expect(r.status).toBe(0x21);                            // isa-debug-exit value 0x10
    expect(r.os).toContain(`  timer: finding error os 0x0001: rejected: layer digest mismatch: expected ${bad.digest} got sha256:${actual}`);
    expect(r.os).toContain('container timer: rejected');
    expect(r.os.some((l) => l.startsWith('container timer: verified'))).toBe(false);
    expect(r.os).toContain('containers: cmos fixed, fwcfg pass, memtest pass, timer rejected, uart pass');
    expect(r.os).toContain('post report: 5 containers, 3 pass, 1 fixed, 0 fail, 0 timeout, 1 rejected, 3 findings');
    // the manifest and config still verified and were measured; the bad layer was not
    expect(r.os.some((l) => l.endsWith(' timer config'))).toBe(true);
    expect(r.os.some((l) => l.endsWith(' timer layer'))).toBe(false);
    expect(r.os.some((l) => /^handoff: block v1 at .* result 1;/.test(l))).toBe(true);
    expect(r.os[r.os.length - 1]).toBe('handoff: no hypervisor, stopping');
  });

  it('a corrupted manifest is rejected before anything of it is used', async () => {
    const bad = await corruptLayout({ layoutDir: layout, outDir: path.join(tmp, 'corrupt-manifest'), container: 'uart', blob: 'manifest', offset: 20 });
    const r = await boot(bad.layoutDir);
    expect(r.status).toBe(0x21);
    expect(r.os.some((l) => l.startsWith(`  uart: finding error os 0x0001: rejected: manifest digest mismatch: expected ${bad.digest} got sha256:`))).toBe(true);
    expect(r.os).toContain('containers: cmos fixed, fwcfg pass, memtest pass, timer pass, uart rejected');
  });

  it('isolation: timeout, page fault, ungranted port and fencing (test-only containers), the OS keeps going', async () => {
    const l = await buildOciLayout({
      quiet: true, layoutDir: path.join(tmp, 'faults'),
      containers: ['testonly-spin', 'testonly-wild', 'testonly-port', 'testonly-ioport', 'testonly-fence', 'uart'],
    });
    const r = await boot(l.layoutDir);
    expect(r.killed).toBe(false);
    expect(r.status).toBe(0x21);
    const os_ = r.os;
    // hung container: killed by the PIT-driven time limit
    expect(os_).toContain('  testonly-spin: spinning forever');
    expect(os_).toContain('  testonly-spin: finding error os 0x0013: killed: time limit of 300 ms exceeded');
    expect(os_).toContain('container testonly-spin: timeout');
    // wild write into the (supervisor-only) OS image: #PF, killed, finding names address and error code
    expect(os_.some((l) => /^ {2}testonly-wild: finding error os 0x0010: killed: page fault at 0xffffffff80200000 \(protection, write, user\), error 0x7, RIP 0x4[0-9a-f]{5}$/.test(l))).toBe(true);
    expect(os_).not.toContain('  testonly-wild: write went through: isolation is broken');
    expect(os_).toContain('container testonly-wild: fail');
    // ports outside the grant
    expect(os_).toContain('  testonly-port: granted port 0x3fd reads ok; now writing 0xfe to port 0x64');
    expect(os_).toContain('  testonly-port: finding error os 0x0012: killed: port write 0x64 (width 1) is not granted');
    expect(os_).toContain('container testonly-port: fail');
    // its own IN/OUT: the granted ports answer through the TSS I/O bitmap, the POST port #GPs
    expect(os_).toContain('  testonly-ioport: granted ports 0x70-0x71 answer our own IN/OUT: CMOS[0x0e] reads back the same');
    expect(os_.some((l) => /^ {2}testonly-ioport: finding error os 0x0011: killed: exception 13 \(#GP[^)]*\), error 0x0, RIP 0x4[0-9a-f]{5}$/.test(l))).toBe(true);
    expect(os_).toContain('container testonly-ioport: fail');
    // fencing: allowed only for lent, page-aligned RAM; the fenced page is handed off as type 5
    const pretend = os_.find((l) => l.startsWith('  testonly-fence: finding error container 0x0602: pretend bad RAM'))!;
    const [, a, b] = /\[mem 0x([0-9a-f]+)-0x([0-9a-f]+)\]/.exec(pretend)!;
    expect(os_).toContain(`  testonly-fence: finding info os 0x0015: fix applied: [mem 0x${a}-0x${b}] fenced, handed off as type 5`);
    expect(os_).toContain('  testonly-fence: finding warning os 0x0016: fix denied: fence [mem 0x200000-0x200fff] (error 1)');
    expect(os_).toContain('  testonly-fence: fence lent page: 0, fence foreign page: -1, fence misaligned: -2');
    expect(os_).toContain('container testonly-fence: fixed');
    const pad = (h: string) => h.padStart(16, '0');
    expect(os_).toContain(`  [mem 0x${pad(a!)}-0x${pad(b!)}] bad (fenced)`);
    // the OS is unaffected: the next container still runs and passes
    expect(os_).toContain('container uart: pass');
    expect(os_).toContain('containers: testonly-fence fixed, testonly-ioport fail, testonly-port fail, testonly-spin timeout, testonly-wild fail, uart pass');
    expect(os_[os_.length - 1]).toBe('handoff: no hypervisor, stopping');
  });

  it('without a container index the OS reports none and still hands off', async () => {
    const r = await boot(null);
    expect(r.status).toBe(1);
    expect(r.os).toContain('oci: no opt/fm/oci/index.json in fw_cfg: no containers to run');
    expect(r.os).toContain('containers: none');
    expect(r.os).toContain('event log: 0 events');
    expect(r.os[r.os.length - 1]).toBe('handoff: no hypervisor, stopping');
  });
});
