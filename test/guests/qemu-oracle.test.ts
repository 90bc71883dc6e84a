/**
 * QEMU oracle: boots every guest with qemu-system-x86_64 -kernel (TCG) and
 * checks its COM1 transcript byte-for-byte against test/guests/expected/,
 * plus the isa-debug-exit status. The expected files are the golden outputs
 * Firmament's own hypervisor must reproduce.
 *
 * Regenerate the goldens (after changing a guest on purpose) with
 *   UPDATE_GOLDEN=1 npx vitest run test/guests/qemu-oracle.test.ts
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildGuests, GUESTS } from '../../tools/build-guests.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const EXPECTED_DIR = path.join(HERE, 'expected');
const QEMU = 'qemu-system-x86_64';
const hasQemu = spawnSync(QEMU, ['--version'], { stdio: 'ignore' }).status === 0;
const UPDATE = process.env.UPDATE_GOLDEN === '1';

interface OracleCase {
  guest: string;
  /** Golden transcript file name in test/guests/expected/. */
  expected: string;
  append?: string;
  smp?: number;
  cpu?: string;
  /** Value the guest writes to isa-debug-exit; QEMU exits with (v << 1) | 1. */
  exitCode: number;
  timeoutMs?: number;
}

/** The case list is shared with Firmament's own hypervisor tests. */
const MANIFEST = JSON.parse(readFileSync(path.join(EXPECTED_DIR, 'cases.json'), 'utf8')) as {
  qemuArgs: string[];
  ramMiB: number;
  cases: OracleCase[];
};
const ORACLE_ARGS = MANIFEST.qemuArgs;
const CASES = MANIFEST.cases;

function caseTitle(c: OracleCase): string {
  const extra = [c.cpu && `-cpu ${c.cpu}`, c.smp && `-smp ${c.smp}`, c.append !== undefined && `-append "${c.append}"`].filter(Boolean);
  return `${c.guest}${extra.length ? ` ${extra.join(' ')}` : ''} -> ${c.expected}`;
}

interface QemuResult {
  status: number | null;
  signal: NodeJS.Signals | null;
  stdout: Buffer;
  stderr: string;
  timedOut: boolean;
}

/** Run QEMU with a hard timeout (SIGKILL). */
function runQemu(args: string[], timeoutMs: number): Promise<QemuResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(QEMU, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let stderr = '';
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (status, signal) => {
      clearTimeout(timer);
      resolve({ status, signal, stdout: Buffer.concat(out), stderr, timedOut });
    });
  });
}

/** Show control characters so a mismatch in \r is visible in the diff. */
const visible = (s: string) => s.replace(/\r/g, '\\r');

describe.skipIf(!hasQemu)('QEMU oracle transcripts', () => {
  let images: Record<string, string> = {};
  const written = new Set<string>();

  beforeAll(async () => {
    images = await buildGuests();
  }, 120_000);

  for (const c of CASES) {
    it(caseTitle(c), async () => {
      const image = images[c.guest];
      expect(image, `no image for ${c.guest}`).toBeDefined();
      const args = ['-kernel', image!, ...ORACLE_ARGS];
      if (c.cpu) args.push('-cpu', c.cpu);
      if (c.smp) args.push('-smp', String(c.smp));
      if (c.append !== undefined) args.push('-append', c.append);
      const r = await runQemu(args, c.timeoutMs ?? 30_000);
      const transcript = r.stdout.toString('latin1');
      const context = `qemu ${args.join(' ')}\nstderr: ${r.stderr}\ntranscript:\n${transcript}`;
      expect(r.timedOut, `timed out\n${context}`).toBe(false);
      expect(r.signal, context).toBeNull();
      expect(r.status, context).toBe((c.exitCode << 1) | 1);

      const goldenPath = path.join(EXPECTED_DIR, c.expected);
      if (UPDATE && !written.has(c.expected)) {
        writeFileSync(goldenPath, r.stdout);
        written.add(c.expected);
      }
      expect(existsSync(goldenPath), `missing golden ${goldenPath} (run with UPDATE_GOLDEN=1)`).toBe(true);
      const golden = readFileSync(goldenPath).toString('latin1');
      expect(visible(transcript)).toBe(visible(golden));
    }, 60_000);
  }
});

/* ---- golden files, checked without QEMU ------------------------------------ */

function golden(name: string): string {
  return readFileSync(path.join(EXPECTED_DIR, name)).toString('latin1');
}

/** Independent TypeScript model of guests/compute. */
function computeModel(rounds: number): number {
  const table = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[i] = c >>> 0;
  }
  const buf = new Uint8Array(65536);
  const M = (1n << 64n) - 1n;
  let x = 0x9e3779b97f4a7c15n;
  for (let i = 0; i < buf.length; i += 8) {
    x ^= x >> 12n;
    x = (x ^ (x << 25n)) & M;
    x ^= x >> 27n;
    let v = (x * 0x2545f4914f6cdd1dn) & M;
    for (let k = 0; k < 8; k++) {
      buf[i + k] = Number(v & 0xffn);
      v >>= 8n;
    }
  }
  let crc = 0;
  for (let r = 0; r < rounds; r++) {
    crc = ~crc >>> 0;
    for (let i = 0; i < buf.length; i++) crc = (table[(crc ^ buf[i]!) & 0xff]! ^ (crc >>> 8)) >>> 0;
    crc = ~crc >>> 0;
  }
  return crc;
}

/** (ahi:alo) * (bhi:blo) mod 2^64 on 32-bit halves; returns [hi, lo]. */
function mul64(ahi: number, alo: number, bhi: number, blo: number): [number, number] {
  const a0 = alo & 0xffff, a1 = alo >>> 16, b0 = blo & 0xffff, b1 = blo >>> 16;
  const mid = a0 * b1 + a1 * b0; // < 2^33, exact
  const low = a0 * b0 + (mid % 0x10000) * 0x10000; // < 2^49, exact
  const carry = Math.floor(low / 0x1_0000_0000);
  let hi = a1 * b1 + Math.floor(mid / 0x10000) + carry;
  hi = (hi + Math.imul(ahi, blo) + Math.imul(alo, bhi)) >>> 0;
  return [hi >>> 0, low >>> 0];
}

/** Independent TypeScript model of guests/dirtier (64-bit words as 32-bit halves). */
function dirtierModel(mib: number, passes: number): bigint {
  const words = (mib << 20) / 8;
  const hiW = new Uint32Array(words);
  const loW = new Uint32Array(words);
  const K1 = [0x9e3779b9, 0x7f4a7c15] as const;
  const K2 = [0xc2b2ae3d, 0x27d4eb4f] as const;
  for (let p = 0; p < passes; p++) {
    const [pmh, pml] = mul64(0, p, K2[0], K2[1]);
    for (let i = 0; i < words; i++) {
      const [mh, ml] = mul64(0, i + 1, K1[0], K1[1]);
      let h = (mh ^ pmh) >>> 0, l = (ml ^ pml) >>> 0;
      if (p > 0) {
        const oh = hiW[i]!, ol = loW[i]!; // rotl 13
        h = (h ^ (((oh << 13) | (ol >>> 19)) >>> 0)) >>> 0;
        l = (l ^ (((ol << 13) | (oh >>> 19)) >>> 0)) >>> 0;
      }
      hiW[i] = h;
      loW[i] = l;
    }
  }
  let hh = 0xcbf29ce4, hl = 0x84222325;
  for (let i = 0; i < words; i++) {
    const rh = ((hh << 5) | (hl >>> 27)) >>> 0, rl = ((hl << 5) | (hh >>> 27)) >>> 0;
    [hh, hl] = mul64((rh ^ hiW[i]!) >>> 0, (rl ^ loW[i]!) >>> 0, 0x00000100, 0x000001b3);
  }
  return (BigInt(hh) << 32n) | BigInt(hl);
}

describe('golden transcripts agree with independent models', () => {
  it('compute: CRC-32 results', () => {
    for (const [file, rounds] of [
      ['compute.txt', 256],
      ['compute.rounds16.txt', 16],
    ] as const) {
      const crc = computeModel(rounds);
      expect(golden(file)).toContain(`compute: crc32 over a 65536-byte buffer, ${rounds} rounds\r\n`);
      expect(golden(file)).toContain(`compute: result 0x${crc.toString(16).padStart(8, '0')}\r\n`);
    }
  });

  it('dirtier: working-set checksums', () => {
    for (const [file, mib, passes] of [
      ['dirtier.txt', 16, 4],
      ['dirtier.mib40.txt', 40, 2],
    ] as const) {
      const h = dirtierModel(mib, passes);
      expect(golden(file)).toContain(`dirtier: working set ${mib} MiB, ${passes} passes\r\n`);
      expect(golden(file)).toContain(`dirtier: checksum 0x${h.toString(16).padStart(16, '0')}\r\n`);
    }
  }, 60_000);

  it('the manifest matches the oracle command line and covers every guest', () => {
    expect(ORACLE_ARGS).toEqual(['-serial', 'stdio', '-display', 'none', '-device', 'isa-debug-exit,iobase=0xf4,iosize=0x04', '-no-reboot', '-m', String(MANIFEST.ramMiB)]);
    const guests = new Set(CASES.map((c) => c.guest));
    // scan and crash probe the hypervisor (isolation, triple-fault containment); QEMU reads 0
    // from unassigned memory and exits 0 on a triple fault, so they have no golden transcript.
    // clone needs the hypervisor's CHECKPOINT/CLONE_INDEX hypercalls, uptick its VERSION hypercall (VMCALL is #UD under QEMU).
    // function-runtime and kvstore serve the function and backup services through hypercalls;
    // gateway/gateway-hostile talk to a host on COM2 and run for seconds of guest time (behaviour
    // profiles); ipipong, overcommit, phases and spin are scheduler workloads whose output depends
    // on the idle policy (test/hypervisor/idle-policy.test.ts checks them). tsccal prints TSC
    // frequencies: QEMU TCG's TSC is the host's (test/hypervisor/tsc.test.ts checks ours); selfipi
    // counts loop iterations before an interrupt, which under TCG depend on where QEMU ends blocks.
    const probes = ['scan', 'crash', 'clone', 'function-runtime', 'kvstore', 'gateway', 'gateway-hostile', 'ipipong', 'overcommit', 'phases', 'spin', 'uptick', 'tsccal', 'selfipi'];
    expect([...guests].sort()).toEqual(Object.keys(GUESTS).filter((g) => !probes.includes(g)).sort());
    // smp and mwait also run with -smp 2
    for (const g of ['smp', 'mwait']) expect(CASES.some((c) => c.guest === g && c.smp === 2)).toBe(true);
  });

  it('every golden uses CRLF line endings and ends with a newline', () => {
    for (const c of CASES) {
      const g = golden(c.expected);
      expect(g.endsWith('\r\n')).toBe(true);
      expect(g.replace(/\r\n/g, '')).not.toMatch(/[\r\n]/);
    }
  });

  it('success transcripts carry no PANIC line; failure ones do', () => {
    for (const c of CASES) expect(golden(c.expected).includes('PANIC:')).toBe(c.exitCode !== 0);
  });
});
