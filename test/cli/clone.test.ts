/** `firmament run --checkpoint REF` and `firmament run --clone REF --count N`: linked clones from the snapshot store. */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildImages } from '../../tools/build-images.mjs';
import { createGuestMachine } from '../../vmm/run-guests.js';
import { SnapshotStore } from '../../vmm/snapshot/index.js';

const CLI = path.resolve(import.meta.dirname, '../../tools/firmament.mjs');
let store: string;
let images: Record<string, string>;
const cli = (...args: string[]) => spawnSync('node', [CLI, ...args, '--store', store], { encoding: 'utf8', timeout: 300_000 });

interface CloneDoc {
  status: number;
  frames: { used: number; before: number; image: number; clones: number };
  clones: { name: string; index: number; ok: boolean; sharedBytes: number; privateBytes: number; cowCopies: number; serial: string; exit: { reason: string; code: number } }[];
}

describe('firmament run --clone', () => {
  beforeAll(async () => {
    images = (await buildImages({ quiet: true })).guests;
    store = mkdtempSync(path.join(tmpdir(), 'fm-clone-cli-'));
  });
  afterAll(() => rmSync(store, { recursive: true, force: true }));

  it('saves a guest at its checkpoint, then runs N clones of it with per-clone consoles, memory and exit status', () => {
    const saved = cli('run', images['clone']!, '--mem', '16M', '--clock', 'virtual', '--checkpoint', 'base');
    expect(saved.status, saved.stderr).toBe(0);
    expect(saved.stdout).toContain('clone: ready');
    expect(saved.stdout).toMatch(/saved the VM at its checkpoint as base/);

    const text = cli('run', '--clone', 'base', '--count', '3', '--private', '0x1ea000+88K', '--clock', 'virtual');
    expect(text.status, text.stderr).toBe(0);
    for (let i = 0; i < 3; i++) expect(text.stdout).toMatch(new RegExp(`^\\[base-${i}\\] clone ${i}: private pattern ok`, 'm'));
    expect(text.stdout).toMatch(/^base-2: ok, debug-exit code 1 .*shared 16296 KiB, private 88 KiB, 0 copied on write/m);
    expect(text.stdout).toContain('3/3 clones ok');

    // Without a private range the clones copy on write what they touch: 4 page tables, 1 of the 2 stack pages, 16 pattern pages.
    const json = cli('run', '--clone', 'base', '--count', '2', '--clock', 'virtual', '--json');
    expect(json.status, json.stderr).toBe(0);
    const doc = JSON.parse(json.stdout) as CloneDoc;
    expect(doc.status).toBe(0);
    expect(doc.clones).toHaveLength(2);
    for (const c of doc.clones) {
      expect(c.ok).toBe(true);
      expect(c.serial).toMatch(new RegExp(`^clone ${c.index}: private pattern ok`));
      expect(c.cowCopies).toBe(21);
      expect(c.privateBytes).toBe(21 * 4096);
      expect(c.sharedBytes + c.privateBytes).toBe(16 * 1024 * 1024);
    }
    expect(doc.frames.image).toBe(4096);
  }, 300_000);

  it('exits 1 when a clone fails, and 2 with a clear message on bad input', async () => {
    // A dirtier VM saved before it ran, asked for more memory than it has: every clone panics.
    const g = createGuestMachine([{ path: images['dirtier']!, memBytes: 8 * 1024 * 1024, vcpus: 1, cmdline: 'mib=64' }], { pcpus: 1, pace: 'virtual' });
    const image = g.hypervisor.snapshotVm(g.vms[0]!);
    g.hypervisor.close();
    g.machine.close();
    await SnapshotStore.open(store).save('toobig', image);
    const r = cli('run', '--clone', 'toobig', '--count', '2', '--clock', 'virtual');
    expect(r.status).toBe(1);
    expect(r.stdout).toMatch(/^\[toobig-1\] PANIC: dirtier: mib=64 does not fit/m);
    expect(r.stdout).toMatch(/^toobig-0: FAILED, debug-exit code 5/m);

    const bad = cli('run', '--clone', 'toobig', '--private', '0x1000+12');
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/--private 0x1000\+12: GPA and LEN must be non-zero multiples of 4 KiB/);
    const outside = cli('run', '--clone', 'toobig', '--private', '0x800000+4K');
    expect(outside.status).toBe(2);
    expect(outside.stderr).toMatch(/privateRanges\[0\].*inside 8388608 bytes of guest RAM/);
    const missing = cli('run', '--clone', 'nosuch');
    expect(missing.status).toBe(2);
    expect(missing.stderr).toMatch(/nosuch/);
  }, 300_000);
});
