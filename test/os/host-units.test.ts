/**
 * OS and container code compiled for the host with small harnesses:
 *  - SHA-256 (firmware/os/kernel/sha256.c): FIPS 180 known answers, the
 *    built-in self-test the OS runs at boot, and agreement with node:crypto
 *    over many lengths and update chunkings;
 *  - the JSON tokenizer the OS uses for index/manifest/config
 *    (firmware/os/kernel/json.c): real OCI documents and malformed input;
 *  - March C- and bad-range merging of the memtest container
 *    (firmware/containers/memtest/march.c) with simulated stuck-at and
 *    coupling faults (QEMU cannot inject RAM faults).
 */
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildOciLayout } from '../../tools/oci-layout.mjs';

const ROOT = path.resolve(import.meta.dirname, '../..');
let dir = '';
const exe = (n: string) => path.join(dir, n);

function cc(out: string, args: string[]): void {
  const r = spawnSync('gcc', ['-O2', '-Wall', '-Wextra', '-Werror', '-Wno-address-of-packed-member', ...args, '-o', exe(out)], { cwd: ROOT, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`host build of ${out} failed:\n${r.stderr}`);
}

function run(name: string, args: string[] = [], input?: Uint8Array | string): string {
  const r = spawnSync(exe(name), args, { input, encoding: 'utf8', maxBuffer: 1 << 24 });
  expect(r.stderr).toBe('');
  expect(r.status).toBe(0);
  return r.stdout;
}

beforeAll(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'firmament-os-host-'));
  cc('sha256_host', ['-I', 'firmware/os/include', '-I', 'firmware/include', 'firmware/os/host-test/sha256_host.c', 'firmware/os/kernel/sha256.c']);
  cc('json_host', ['-I', 'firmware/os/include', '-I', 'firmware/include', 'firmware/os/host-test/json_host.c', 'firmware/os/kernel/json.c']);
  cc('march_host', ['-DMARCH_HOST', '-I', 'firmware/include', '-I', 'firmware/containers/memtest',
    'firmware/containers/memtest/host/march_host.c', 'firmware/containers/memtest/march.c']);
}, 60_000);

afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('SHA-256 (firmware/os/kernel/sha256.c)', () => {
  const KAT: [string, string][] = [
    ['', 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'],
    ['abc', 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad'],
    ['abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq', '248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1'],
    ['abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu',
      'cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1'],
    ['a'.repeat(1_000_000), 'cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0'],
  ];

  it('matches the FIPS 180 known-answer vectors (incl. one million "a")', () => {
    for (const [msg, hex] of KAT) {
      expect(run('sha256_host', ['64'], msg).trim()).toBe(hex);
      expect(run('sha256_host', ['1'], msg.slice(0, 5000)).trim()).toBe(createHash('sha256').update(msg.slice(0, 5000)).digest('hex'));
    }
  });

  it('passes its own boot-time self-test', () => {
    expect(run('sha256_host', ['selftest']).trim()).toBe('0');
  });

  it('agrees with node:crypto for every length 0..300 and odd chunkings up to 1 MiB', () => {
    const data = randomBytes(1 << 20);
    for (let n = 0; n <= 300; n += n < 130 ? 1 : 17) {
      const part = data.subarray(0, n);
      expect(run('sha256_host', [String(1 + (n % 67))], part).trim()).toBe(createHash('sha256').update(part).digest('hex'));
    }
    for (const chunk of ['63', '64', '65', '4096', '1048576']) {
      expect(run('sha256_host', [chunk], data).trim()).toBe(createHash('sha256').update(data).digest('hex'));
    }
  });
});

describe('JSON tokenizer (firmware/os/kernel/json.c)', () => {
  it('reads the real index.json, manifests and configs', async () => {
    const l = await buildOciLayout({ quiet: true });
    const index = readFileSync(path.join(l.layoutDir, 'index.json'));
    expect(run('json_host', ['schemaVersion'], index).trim()).toBe('u64 2');
    expect(run('json_host', ['manifests'], index).trim()).toBe('size 5');
    expect(run('json_host', ['manifests', '3', 'annotations', 'org.opencontainers.image.ref.name'], index).trim()).toBe('timer');
    expect(run('json_host', ['manifests', '3', 'digest'], index).trim()).toBe(l.containers[3]!.manifestDigest);
    expect(run('json_host', ['manifests', '5'], index).trim()).toBe('missing');
    const cfg = readFileSync(path.join(l.layoutDir, 'blobs/sha256', l.containers[0]!.configDigest.slice(7)));
    expect(run('json_host', ['config', 'Labels', 'org.firmament.devices'], cfg).trim()).toBe('port:0x70-0x71');
    expect(run('json_host', ['rootfs', 'diff_ids', '0'], cfg).trim()).toBe(l.containers[0]!.layerDigest);
  });

  it('accepts valid documents with escapes, nesting, numbers and literals', () => {
    expect(run('json_host', ['a', '2', 'b'], '{"a":[1,2,{"b":"x\\"y\\\\z"}],"c":null}').trim()).toBe('x"y\\z');
    expect(run('json_host', [], ' {"k": {"l": [true, false, null, -1.5e3, 0]}} \n').split('\n')[0]).toBe('ok 10');
    expect(run('json_host', [], '[]').trim()).toBe('ok 1\n2 0 2 0');
    // duplicate keys: the first wins (the OS never relies on either)
    expect(run('json_host', ['a'], '{"a":"1","a":"2"}').trim()).toBe('1');
  });

  it('rejects malformed documents', () => {
    const bad = ['', '{', '}', '{"a":1,}', '[1,]', '[1 2]', '{"a"}', '{"a":}', '{:1}', '{"a":1}x', '{"a":1}{}', '{"a" 1}',
      '"unterminated', '["\x01"]', '["\\q"]', '["\\u12"]', '{"a":tru}', '{"a":-}', '{"a":[}]', '[{]}', '1 2', '{1:2}',
      '['.repeat(17) + ']'.repeat(17)];
    for (const d of bad) expect(run('json_host', [], d).trim(), JSON.stringify(d)).toBe('error');
  });
});

describe('March C- with simulated faults (firmware/containers/memtest/march.c)', () => {
  const parse = (out: string) => {
    const rows = out.trim().split('\n').map((l) => l.split(' '));
    return {
      ranges: rows.filter((r) => r[0] === 'range').map((r) => r.slice(1)),
      overflow: rows.find((r) => r[0] === 'overflow')?.[1] === '1',
      failures: Number(rows.find((r) => r[0] === 'failures')?.[1]),
    };
  };

  it('passes clean memory', () => {
    expect(parse(run('march_host', ['--pages', '64']))).toEqual({ ranges: [], overflow: false, failures: 0 });
  });

  it('finds stuck-at-1 and stuck-at-0 bits and reports page-aligned ranges with the bad bits', () => {
    const r = parse(run('march_host', ['--pages', '64', '--base', '0x3000000',
      '--stuck', '0x5008', '0x10', '0x10',            // bit 4 stuck at 1
      '--stuck', '0x9ff8', '0x8000000000000000', '0']));  // bit 63 stuck at 0
    expect(r.ranges).toEqual([
      ['0x3005000', '0x3006000', '0x3005008', '0x10'],
      ['0x3009000', '0x300a000', '0x3009ff8', '0x8000000000000000'],
    ]);
  });

  it('merges failures on adjacent pages into one range', () => {
    const r = parse(run('march_host', ['--pages', '64',
      '--stuck', '0x2ff8', '0xff', '0xff', '--stuck', '0x3000', '0x1', '0x1', '--stuck', '0x4800', '0x100', '0x100']));
    expect(r.ranges).toEqual([['0x102000', '0x105000', '0x102ff8', '0x1ff']]);
  });

  it('detects an inter-word coupling fault (write to one qword inverts another)', () => {
    const r = parse(run('march_host', ['--pages', '32', '--couple', '0x1000', '0x7008']));
    expect(r.ranges.length).toBe(1);
    expect(r.ranges[0]!.slice(0, 2)).toEqual(['0x107000', '0x108000']);
    expect(r.failures).toBeGreaterThan(0);
  });

  it('keeps at most 16 ranges, widening the nearest one instead of dropping a failure', () => {
    const recs = Array.from({ length: 20 }, (_, i) => ['--record', `0x${(0x100000 + i * 0x10000).toString(16)}`]).flat();
    const r = parse(run('march_host', recs));
    expect(r.ranges.length).toBe(16);
    expect(r.overflow).toBe(true);
    expect(r.failures).toBe(20);
    // every recorded address is inside some range
    for (let i = 0; i < 20; i++) {
      const a = 0x100000 + i * 0x10000;
      expect(r.ranges.some(([b, e]) => a >= Number(b) && a < Number(e))).toBe(true);
    }
  });
});
