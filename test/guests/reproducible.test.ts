/**
 * tools/build-guests.mjs: reproducible output, incremental skipping and
 * compiler-error reporting. Builds go to temporary directories so they never
 * race with the oracle test reading images/build/guests.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { buildGuests, GUESTS, GuestBuildError } from '../../tools/build-guests.mjs';
import { parseMultibootImage } from '../../hypervisor/multiboot/index.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const SCRIPT = path.join(REPO, 'tools', 'build-guests.mjs');
const hasToolchain = ['gcc', 'ld', 'objcopy'].every((t) => spawnSync(t, ['--version'], { stdio: 'ignore' }).status === 0);

const temps: string[] = [];
function tempDir(tag: string): string {
  const d = mkdtempSync(path.join(tmpdir(), `fm-guests-${tag}-`));
  temps.push(d);
  return d;
}
afterAll(() => {
  for (const d of temps) rmSync(d, { recursive: true, force: true });
});

/** sha256 of every .elf/.elf64 in dir. */
function digests(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const f of readdirSync(dir).sort()) {
    if (f.endsWith('.elf') || f.endsWith('.elf64')) out[f] = createHash('sha256').update(readFileSync(path.join(dir, f))).digest('hex');
  }
  return out;
}

/** A copy of the repo's guests/ tree under a different, deeper path. */
function copyOfSources(tag: string): string {
  const root = path.join(tempDir(tag), 'some', 'other', 'checkout');
  cpSync(path.join(REPO, 'guests'), path.join(root, 'guests'), { recursive: true });
  return root;
}

describe.skipIf(!hasToolchain)('build-guests', () => {
  let first: Record<string, string> = {};

  it('builds every guest twice with force to byte-identical ELFs', async () => {
    const a = tempDir('a');
    const b = tempDir('b');
    const pa = await buildGuests({ force: true, outDir: a });
    const pb = await buildGuests({ force: true, outDir: b });
    expect(Object.keys(pa)).toEqual(Object.keys(GUESTS));
    expect(Object.keys(pb)).toEqual(Object.keys(GUESTS));
    for (const [name, p] of Object.entries(pa)) expect(p).toBe(path.join(a, `${name}.elf`));
    first = digests(a);
    // one ELF32 per guest plus the ELF64 of each 64-bit guest
    const n64 = Object.values(GUESTS).filter((arch) => arch === 'x86_64').length;
    expect(Object.keys(first)).toHaveLength(Object.keys(GUESTS).length + n64);
    expect(digests(b)).toEqual(first);
  }, 120_000);

  it('is independent of where the source tree lives', async () => {
    const root = copyOfSources('loc');
    const out = tempDir('loc-out');
    await buildGuests({ force: true, root, outDir: out });
    expect(digests(out)).toEqual(first);
  }, 120_000);

  it('every image is an ELF32 Multiboot image the loader accepts, 64-bit ones with an ELF64 twin', async () => {
    const out = tempDir('parse');
    const images = await buildGuests({ outDir: out });
    for (const [name, p] of Object.entries(images)) {
      const plan = parseMultibootImage(readFileSync(p), path.basename(p), { ramSize: 64 << 20 });
      expect(plan.format).toBe('elf32');
      expect(plan.machine).toBe('i386');
      expect(plan.entry).toBe(0x10000c); // _start right after the 12-byte header at 1 MiB
      expect(plan.header.flags).toBe(0x3);
      if (GUESTS[name as keyof typeof GUESTS] === 'x86_64') {
        const twin = parseMultibootImage(readFileSync(`${p}64`), `${name}.elf64`, { ramSize: 64 << 20 });
        expect(twin.format).toBe('elf64');
        expect(twin.machine).toBe('x86_64');
        // same physical layout and contents after objcopy -O elf32-i386
        expect(twin.segments.map((s) => [s.paddr, s.memSize])).toEqual(plan.segments.map((s) => [s.paddr, s.memSize]));
        twin.segments.forEach((s, i) => expect(Buffer.from(s.fileBytes).equals(Buffer.from(plan.segments[i]!.fileBytes))).toBe(true));
      }
    }
  }, 120_000);

  it('skips guests whose inputs did not change and rebuilds the ones that did', async () => {
    const root = copyOfSources('inc');
    const out = tempDir('inc-out');
    const built1: string[] = [];
    await buildGuests({ root, outDir: out, onProgress: (name, built) => built && built1.push(name) });
    expect(built1.sort()).toEqual(Object.keys(GUESTS).sort());

    const built2: string[] = [];
    await buildGuests({ root, outDir: out, onProgress: (name, built) => built && built2.push(name) });
    expect(built2).toEqual([]);

    // A change to one guest rebuilds only that guest ...
    const src = path.join(root, 'guests', 'compute', 'main.c');
    writeFileSync(src, `${readFileSync(src, 'utf8')}\n/* touched */\n`);
    const built3: string[] = [];
    await buildGuests({ root, outDir: out, onProgress: (name, built) => built && built3.push(name) });
    expect(built3).toEqual(['compute']);

    // ... a change to the 64-bit library rebuilds every 64-bit guest but not hello ...
    const lib = path.join(root, 'guests', 'lib', 'x86_64', 'lapic.c');
    writeFileSync(lib, `${readFileSync(lib, 'utf8')}\n/* touched */\n`);
    const built4: string[] = [];
    await buildGuests({ root, outDir: out, onProgress: (name, built) => built && built4.push(name) });
    expect(built4.sort()).toEqual(Object.keys(GUESTS).filter((g) => GUESTS[g as keyof typeof GUESTS] === 'x86_64').sort());

    // ... and a damaged output is noticed and rebuilt.
    writeFileSync(path.join(out, 'hello.elf'), 'garbage');
    const built5: string[] = [];
    await buildGuests({ root, outDir: out, onProgress: (name, built) => built && built5.push(name) });
    expect(built5).toEqual(['hello']);
  }, 120_000);

  it('reports compiler errors: the API rejects, the CLI exits non-zero with the message', async () => {
    const root = copyOfSources('err');
    const out = tempDir('err-out');
    const src = path.join(root, 'guests', 'timer', 'main.c');
    writeFileSync(src, `${readFileSync(src, 'utf8')}\nint broken(void) { return undeclared_identifier_xyz; }\n`);

    await expect(buildGuests({ root, outDir: out })).rejects.toThrow(GuestBuildError);
    await expect(buildGuests({ root, outDir: out })).rejects.toThrow(/undeclared_identifier_xyz/);

    const r = spawnSync(process.execPath, [SCRIPT, '--root', root, '--out', out], { encoding: 'utf8' });
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain('compiling guests/timer/main.c for timer failed');
    expect(r.stderr).toMatch(/guests\/timer\/main\.c:\d+:\d+: error: .undeclared_identifier_xyz. undeclared/);
    // no half-written outputs or temporary directories are left behind
    expect(readdirSync(out).filter((f) => f.startsWith('.tmp-'))).toEqual([]);
  }, 120_000);

  it('CLI: --help, unknown arguments, up-to-date run', () => {
    const out = tempDir('cli');
    const help = spawnSync(process.execPath, [SCRIPT, '--help'], { encoding: 'utf8' });
    expect(help.status).toBe(0);
    expect(help.stdout).toMatch(/usage: node tools\/build-guests\.mjs/);
    const bad = spawnSync(process.execPath, [SCRIPT, '--bogus'], { encoding: 'utf8' });
    expect(bad.status).toBe(2);
    const ok1 = spawnSync(process.execPath, [SCRIPT, '--out', out], { encoding: 'utf8' });
    expect(ok1.status).toBe(0);
    expect(ok1.stdout).toMatch(/^built +hello /m);
    const ok2 = spawnSync(process.execPath, [SCRIPT, '--out', out], { encoding: 'utf8' });
    expect(ok2.status).toBe(0);
    expect(ok2.stdout.trim().split('\n')).toHaveLength(Object.keys(GUESTS).length);
    expect(ok2.stdout).not.toMatch(/^built/m);
  }, 120_000);
});
