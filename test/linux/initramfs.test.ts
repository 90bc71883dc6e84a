import { gunzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { busyboxInitramfs, newcArchive } from '../../tools/initramfs.mjs';

/** Reads a newc archive back: the fields the kernel's initramfs unpacker uses. */
function parseNewc(b: Uint8Array): Array<{ name: string; mode: number; mtime: number; uid: number; data: string }> {
  const out = [];
  const text = new TextDecoder('latin1');
  let at = 0;
  for (;;) {
    const h = text.decode(b.subarray(at, at + 110));
    expect(h.slice(0, 6)).toBe('070701');
    const field = (i: number): number => parseInt(h.slice(6 + i * 8, 14 + i * 8), 16);
    const nameSize = field(11);
    const fileSize = field(6);
    const name = text.decode(b.subarray(at + 110, at + 110 + nameSize - 1));
    at = Math.ceil((at + 110 + nameSize) / 4) * 4;
    const data = text.decode(b.subarray(at, at + fileSize));
    at = Math.ceil((at + fileSize) / 4) * 4;
    if (name === 'TRAILER!!!') return out;
    out.push({ name, mode: field(1), uid: field(2), mtime: field(5), data });
  }
}

describe('initramfs (tools/initramfs.mjs)', () => {
  it('writes newc entries sorted, with mtime 0 and uid 0, padded to 4 bytes, and a trailer', () => {
    const a = newcArchive([
      { path: 'init', mode: 0o100755, data: new TextEncoder().encode('#!/bin/sh\n') },
      { path: 'bin', mode: 0o040755 },
    ]);
    expect(parseNewc(a)).toEqual([
      { name: 'bin', mode: 0o040755, uid: 0, mtime: 0, data: '' },
      { name: 'init', mode: 0o100755, uid: 0, mtime: 0, data: '#!/bin/sh\n' },
    ]);
  });

  it('is reproducible: the same busybox gives the same bytes; /init starts a shell', () => {
    const fakeBusybox = new Uint8Array(5000).map((_, i) => (i * 7) & 0xff);
    const a = busyboxInitramfs(fakeBusybox);
    expect(Buffer.compare(a, busyboxInitramfs(fakeBusybox))).toBe(0);
    const entries = parseNewc(gunzipSync(a));
    expect(entries.map((e) => e.name)).toEqual(['bin', 'bin/busybox', 'bin/sh', 'dev', 'init', 'proc', 'sys', 'tmp']);
    expect(entries.find((e) => e.name === 'bin/sh')).toMatchObject({ mode: 0o120777, data: 'busybox' });
    expect(entries.find((e) => e.name === 'init')!.data).toMatch(/^#!\/bin\/busybox sh\n[\s\S]*exec \/bin\/sh\n$/);
    expect(entries.find((e) => e.name === 'bin/busybox')!.data.length).toBe(5000);
  });
});
