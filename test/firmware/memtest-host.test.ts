/**
 * The firmware's memory test and e820 code (firmware/post/memtest.c,
 * memmap.c) compiled for the host with simulated stuck bits
 * (firmware/host-test/memtest_host.c). QEMU cannot inject RAM faults, so
 * this is where the failure path (page-aligned merged ranges, first bad
 * address, type-5 fencing) is checked.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const ROOT = path.resolve(import.meta.dirname, '../..');

interface PostCodesModule {
  loadPostCodes(): unknown;
  renderPostCodesHeader(codes: unknown): string;
}

let dir = '';
let exe = '';

beforeAll(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'firmament-memtest-'));
  const mod = (await import(pathToFileURL(path.join(ROOT, 'tools/build-firmware.mjs')).href)) as PostCodesModule;
  mkdirSync(path.join(dir, 'gen'));
  writeFileSync(path.join(dir, 'gen', 'post_codes.h'), mod.renderPostCodesHeader(mod.loadPostCodes()));
  exe = path.join(dir, 'memtest_host');
  const r = spawnSync(
    'gcc',
    ['-O2', '-DFW_HOST_TEST', '-Wall', '-Wextra', '-Werror', '-Wno-address-of-packed-member',
      '-I', 'firmware/include', '-I', path.join(dir, 'gen'),
      'firmware/host-test/memtest_host.c', 'firmware/post/memtest.c', 'firmware/post/memmap.c', '-o', exe],
    { cwd: ROOT, encoding: 'utf8' },
  );
  if (r.status !== 0) throw new Error(`host harness build failed:\n${r.stderr}`);
}, 60_000);

afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

interface Result {
  ranges: string[][];
  overflow: boolean;
  e820: string[][];
}

function run(...stuck: string[][]): Result {
  const args = ['--ram-mib', '64', '--test', '0x100000', '0x1000000', ...stuck.flatMap((s) => ['--stuck', ...s])];
  const r = spawnSync(exe, args, { encoding: 'utf8' });
  expect(r.stderr).toBe('');
  expect(r.status).toBe(0);
  const rows = r.stdout.trim().split('\n').map((l) => l.split(' '));
  return {
    ranges: rows.filter((x) => x[0] === 'range').map((x) => x.slice(1)),
    overflow: rows.find((x) => x[0] === 'overflow')?.[1] === '1',
    e820: rows.filter((x) => x[0] === 'e820').map((x) => x.slice(1)),
  };
}

const ALL = '0xffffffffffffffff';
const BASE_MAP = [
  ['0x0', '0x20000', '2'],
  ['0x20000', '0x80000', '1'],
  ['0xa0000', '0x60000', '2'],
];
const TAIL_MAP = [
  ['0xfee00000', '0x1000', '2'],
  ['0xfffe0000', '0x20000', '2'],
];

describe('memory test (host harness, simulated stuck bits)', () => {
  it('passes clean RAM and leaves the 6-entry map alone', () => {
    const r = run();
    expect(r.ranges).toEqual([]);
    expect(r.overflow).toBe(false);
    expect(r.e820).toEqual([...BASE_MAP, ['0x100000', '0x3f00000', '1'], ...TAIL_MAP]);
  });

  it('stuck-at-1 bit in 0x200000+0x1000: one page range, first bad address, fenced as type 5', () => {
    const r = run(['0x200000', '0x1000', ALL, '0x1']);
    expect(r.ranges).toEqual([['0x200000', '0x201000', '0x200000', '0x200000', '0x200001']]);
    expect(r.e820).toEqual([
      ...BASE_MAP,
      ['0x100000', '0x100000', '1'],
      ['0x200000', '0x1000', '5'],
      ['0x201000', '0x3dff000', '1'],
      ...TAIL_MAP,
    ]);
  });

  it('stuck-at-0 bit is found by the inverted pass', () => {
    // bit 0 of an 8-aligned address is 0, so only ~addr (bit 0 = 1) exposes it
    const r = run(['0x300008', '0x8', '0xfffffffffffffffe', '0x0']);
    expect(r.ranges).toEqual([['0x300000', '0x301000', '0x300008', '0xffffffffffcffff7', '0xffffffffffcffff6']]);
  });

  it('merges adjacent bad pages into one range and keeps disjoint ones apart', () => {
    const r = run(
      ['0x200ff8', '0x8', ALL, '0x1'], // pass 1, last qword of page 0x200000
      ['0x201000', '0x8', ALL, '0x1'], // pass 1, next page: merged
      ['0x202000', '0x8', '0xfffffffffffffffe', '0x0'], // pass 2 only, adjacent: merged
      ['0x800000', '0x2000', ALL, '0x8000000000000000'], // disjoint two-page range
    );
    expect(r.ranges).toEqual([
      ['0x200000', '0x203000', '0x200ff8', '0x200ff8', '0x200ff9'],
      ['0x800000', '0x802000', '0x800000', '0x800000', '0x8000000000800000'],
    ]);
    expect(r.e820).toContainEqual(['0x200000', '0x3000', '5']);
    expect(r.e820).toContainEqual(['0x800000', '0x2000', '5']);
  });

  it('widens ranges instead of losing faults when more than 8 disjoint ranges fail', () => {
    const stuck = Array.from({ length: 10 }, (_, i) => [`0x${(0x200000 + i * 0x10000).toString(16)}`, '0x8', ALL, '0x4']);
    const r = run(...stuck);
    expect(r.overflow).toBe(true);
    expect(r.ranges).toHaveLength(8);
    // every faulty page is inside some reported range
    for (const s of stuck) {
      const a = Number(s[0]);
      expect(r.ranges.some((x) => a >= Number(x[0]) && a < Number(x[1]))).toBe(true);
    }
  });
});
