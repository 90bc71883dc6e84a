/**
 * The CLI under careless and hostile input (issue 11): clear errors without
 * stack traces, exit statuses that say what happened, output that survives a
 * closed stdout, serial output kept as bytes, and every guest reported.
 */
import { spawn, type StdioOptions } from 'node:child_process';
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { chattyGuest, serialBytesGuest } from './support/tiny-guest.js';

const CLI = path.resolve(import.meta.dirname, '../../tools/firmament.mjs');
const GUESTS = path.resolve(import.meta.dirname, '../../images/build/guests');
interface Ran {
  status: number | null;
  stdout: Buffer;
  stderr: Buffer;
}

/** Runs the CLI without blocking the test worker (a boot takes a while; vitest's RPC must keep answering). */
function run(args: string[], stdio: StdioOptions = ['ignore', 'pipe', 'pipe']): Promise<Ran> {
  return new Promise((resolve, reject) => {
    const child = spawn('node', [CLI, ...args], { stdio });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout?.on('data', (d: Buffer) => out.push(d));
    child.stderr?.on('data', (d: Buffer) => err.push(d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 240_000);
    child.on('error', reject);
    child.on('close', (status) => {
      clearTimeout(timer);
      resolve({ status, stdout: Buffer.concat(out), stderr: Buffer.concat(err) });
    });
  });
}
const cli = (...args: string[]): Promise<Ran> => run(args);
const text = (b: Buffer | string): string => b.toString();
const STACK = /\n\s+at /;

let dir: string;
let bytesElf: string;
let badSumElf: string;
let chattyElf: string;
const SERIAL = [0xff, 0x80, 0xc3, 0x41, 0x0a];

beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'fm-sec-cli-'));
  bytesElf = path.join(dir, 'bytes.elf');
  writeFileSync(bytesElf, serialBytesGuest(SERIAL, 3));
  const bad = serialBytesGuest([0x41], 0);
  bad[8] = bad[8]! ^ 1; // Multiboot header checksum
  badSumElf = path.join(dir, 'badsum.elf');
  writeFileSync(badSumElf, bad);
  chattyElf = path.join(dir, 'chatty.elf');
  writeFileSync(chattyElf, chattyGuest(200_000, 0x41, 2));
});

describe('bad input is a clear error, never a stack trace', () => {
  const cases: [string, string[], RegExp][] = [
    ['a missing guest', ['run', 'nope.elf'], /nope\.elf: guest image: no such file/],
    ['a directory', ['run', '/tmp'], /\/tmp: guest image: is a directory/],
    ['a character device (/dev/zero would never end)', ['run', '/dev/zero'], /\/dev\/zero: guest image: is a character device/],
    ['--mem 0', ['run', `${GUESTS}/hello.elf`, '--mem', '0'], /--mem 0: expected a RAM size/],
    ['--mem 8G', ['run', `${GUESTS}/hello.elf`, '--mem', '8G'], /--mem 8G: expected a RAM size/],
    ['--mem 4096G', ['boot', '--mem', '4096G'], /--mem 4096G: expected a RAM size/],
    ['--timeout abc', ['run', `${GUESTS}/hello.elf`, '--timeout', 'abc'], /--timeout abc: expected seconds/],
    ['translate --vcpus 0', ['translate', `${GUESTS}/paging.elf`, '0x0', '--vcpus', '0'], /--vcpus 0: expected a whole number/],
    ['translate --vcpus abc', ['translate', `${GUESTS}/paging.elf`, '0x0', '--vcpus', 'abc'], /--vcpus abc: expected a whole number/],
    ['inspect --memory p:zz', ['inspect', '--memory', 'p:zz'], /--memory p:zz: 'zz' is not an address/],
    ['containers list --layout missing', ['containers', 'list', '--layout', '/nonexistent-layout'], /nonexistent-layout\/index\.json: OCI layout index: no such file/],
    ['boot --guest-mem 0', ['boot', '--guest', `${GUESTS}/hello.elf`, '--guest-mem', '0'], /--guest-mem 0: expected a RAM size/],
  ];
  for (const [what, args, message] of cases) {
    it(what, async () => {
      const r = await cli(...args);
      expect(r.status, text(r.stderr)).toBe(2);
      expect(text(r.stderr)).toMatch(message);
      expect(text(r.stderr)).not.toMatch(STACK);
    });
  }

  it('a 3 GB file is refused from its size, without reading it', async () => {
    const big = path.join(dir, 'huge.elf');
    closeSync(openSync(big, 'w'));
    truncateSync(big, 3 * 1024 ** 3); // sparse: no disk used
    const r = await cli('run', big);
    expect(r.status).toBe(2);
    expect(text(r.stderr)).toMatch(/huge\.elf: guest image: is 3072\.0 MiB, more than the 128\.0 MiB allowed/);
  });

  it('boot --junit <directory> fails before booting', async () => {
    const d = path.join(dir, 'junit-dir');
    mkdirSync(d, { recursive: true });
    const r = await cli('boot', '--junit', d, '--json');
    expect(r.status).toBe(2);
    expect(text(r.stderr)).toMatch(/--junit .*junit-dir: is a directory/);
    // Checked up front: no boot ran, so stdout holds only the error document.
    expect(JSON.parse(text(r.stdout))).toMatchObject({ error: { kind: 'usage' }, exit: { reason: 'error', code: 2 } });
  });

  it('run --json prints a JSON error document on an error', async () => {
    const r = await cli('run', 'nope.elf', '--json');
    expect(r.status).toBe(2);
    expect(JSON.parse(text(r.stdout))).toEqual({ error: { kind: 'InputFileError', message: 'nope.elf: guest image: no such file' }, exit: { reason: 'error', code: 2 } });
  });
});

describe('serial output is bytes', () => {
  it('run writes 0x80-0xFF as themselves, and --json keeps them one char per byte', async () => {
    const r = await cli('run', bytesElf, '--clock', 'virtual');
    expect(r.status).toBe(7); // (3 << 1) | 1
    expect([...r.stdout]).toEqual(SERIAL);
    const j = await cli('run', bytesElf, '--clock', 'virtual', '--json');
    const doc = JSON.parse(text(j.stdout)) as { serial: string; guests: { serial: string }[] };
    expect([...Buffer.from(doc.serial, 'latin1')]).toEqual(SERIAL);
    expect([...Buffer.from(doc.guests[0]!.serial, 'latin1')]).toEqual(SERIAL);
  });
});

describe('a closed stdout does not change the exit status', () => {
  it('run | head -c 1: no EPIPE crash, the guest status stands', async () => {
    const child = spawn('node', [CLI, 'run', chattyElf, '--clock', 'virtual'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    // Like `head -c 1`: read one chunk, then close the pipe while the guest keeps writing.
    child.stdout.once('data', () => child.stdout.destroy());
    const status = await new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
    expect(stderr).not.toMatch(/EPIPE|STACK/);
    expect(stderr).not.toMatch(STACK);
    expect(status).toBe(5); // (2 << 1) | 1
  });

  it('run >/dev/full: no ENOSPC crash, the guest status stands', async () => {
    const full = openSync('/dev/full', 'w');
    try {
      const r = await run(['run', bytesElf, '--clock', 'virtual'], ['ignore', full, 'pipe']);
      expect(text(r.stderr)).not.toMatch(STACK);
      expect(r.status).toBe(7);
    } finally {
      closeSync(full);
    }
  });
});

describe('boot with good and bad guests reports every guest', () => {
  it('a missing image and a bad checksum are reported in place; the good guest still runs; status 2', async () => {
    const junit = path.join(dir, 'boot.xml');
    const r = await cli('boot', '--clock', 'virtual', '--guest', bytesElf, '--guest', path.join(dir, 'nope.elf'), '--guest', badSumElf, '--json', '--junit', junit);
    expect(r.status, text(r.stderr)).toBe(2);
    const doc = JSON.parse(text(r.stdout)) as { guests: { name: string; serial: string; exit: { reason: string; code: number; detail?: string } }[] };
    expect(doc.guests.map((g) => g.name)).toEqual(['bytes', 'nope', 'badsum']);
    expect(doc.guests[0]!.exit).toMatchObject({ reason: 'debug-exit', code: 7 });
    expect([...Buffer.from(doc.guests[0]!.serial, 'latin1')]).toEqual(SERIAL);
    expect(doc.guests[1]!.exit.reason).toBe('error');
    expect(doc.guests[1]!.exit.detail).toMatch(/nope\.elf: guest image: no such file/);
    expect(doc.guests[2]!.exit.reason).toBe('error');
    expect(doc.guests[2]!.exit.detail).toMatch(/badsum\.elf: offset 0x8: .*checksum/);
    // The JUnit report names all three, and holds the serial bytes as bytes (ISO-8859-1).
    const xml = readFileSync(junit);
    expect(xml.toString('latin1')).toMatch(/encoding="ISO-8859-1"/);
    for (const n of ['bytes', 'nope', 'badsum']) expect(xml.toString('latin1')).toContain(`name="guest ${n}"`);
    expect(xml.includes(Buffer.from([0xff, 0x80, 0xc3, 0x41]))).toBe(true);
  }, 300_000);
});
