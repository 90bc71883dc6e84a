import { beforeAll, describe, expect, it } from 'vitest';
import { buildImages } from '../../tools/build-images.mjs';
import { createConnection } from 'node:net';
import { MigrationError } from '../../vmm/migration/source.js';
import { encodeJson, encodePages, FrameDecoder, FrameEncoder, FrameType } from '../../vmm/migration/stream.js';
import { encodeSnapshot } from '../../machine/snapshot/codec.js';
import { endSource, expectSameRun, migrateTo, referenceRun, startDestination, startProxy, startSource, waitFor, type Fault, type ReferenceRun, type Source } from './helpers.js';

/**
 * Faults between two machines, injected by a TCP proxy: the destination
 * refuses and frees what it allocated, the source keeps its VM exactly as it
 * was, and a retry to a fresh destination succeeds with the transcript of an
 * unmigrated run.
 */
const MiB = 1024 * 1024;
let images: Record<string, string>;
let golden: ReferenceRun;
const SPEC = (): { path: string; memBytes: number; vcpus: number; cmdline: string } => ({ path: images['dirtier']!, memBytes: 64 * MiB, vcpus: 1, cmdline: 'mib=8 passes=6' });

async function pausedSource(): Promise<Source> {
  const src = startSource(SPEC(), { pauseAtBytes: 120 });
  await waitFor(() => src.g.machine.paused || src.g.machine.exit !== null, 'the source to pause mid-run');
  expect(src.vm.state).toBe('running');
  return src;
}

/** The source after a failed migration: its VM is scheduled, not held, its clock runs, its dirty log is off. */
function expectUntouched(src: Source): void {
  expect(src.g.hypervisor.vms).toContain(src.vm);
  expect(src.vm.frozen).toBe(false);
  expect(src.vm.clock.paused).toBe(false);
  expect(src.vm.vmMemory.dirtyLogging).toBe(false);
  expect(src.vm.state).toBe('running');
}

/** Retries to a fresh destination and checks the joined transcript and exit against the unmigrated run. */
async function retrySucceeds(src: Source): Promise<void> {
  const dst = await startDestination();
  try {
    await migrateTo(src, dst.port);
    const done = await dst.result;
    expectSameRun(src.printed, done, golden);
  } finally {
    dst.close();
  }
}


describe('migration faults lose nothing', () => {
  beforeAll(async () => {
    images = (await buildImages({ quiet: true })).guests;
    golden = await referenceRun(SPEC());
  }, 120_000);

  const cases: { name: string; fault: Fault; dstError: RegExp }[] = [
    { name: 'the link cut in round 1', fault: { kind: 'cut-after-bytes', bytes: 3 * MiB }, dstError: /truncated|connection|closed/ },
    { name: 'a corrupt byte', fault: { kind: 'corrupt-at', offset: 2 * MiB + 77 }, dstError: /field 'crc'.*corrupt/ },
    { name: 'a truncated stream', fault: { kind: 'truncate-at', bytes: MiB + 5 }, dstError: /truncated/ },
    { name: 'a version mismatch', fault: { kind: 'preamble-version', version: 2 }, dstError: /field 'version': stream version 2; this build speaks version 1/ },
  ];
  for (const c of cases) {
    it(`${c.name}: the destination refuses and frees, the source keeps the VM, a retry succeeds`, async () => {
      const src = await pausedSource();
      const dst = await startDestination();
      const proxy = await startProxy(dst.port, c.fault);
      dst.result.catch(() => undefined);
      try {
        const err = await migrateTo(src, proxy.port).then(
          () => null,
          (e: Error) => e,
        );
        expect(err).toBeInstanceOf(MigrationError);
        expect((err as MigrationError).sourceVm).toBe('running');
        expect(err!.message).toMatch(/keeps running here/);
        const refusal = await dst.result.then(
          () => null,
          (e: Error) => e,
        );
        expect(refusal?.message).toMatch(c.dstError);
        expect(dst.vmOwners()).toEqual([]);
        expect(dst.freeFrames()).toBeGreaterThanOrEqual(dst.initialFreeFrames - 3);
        expectUntouched(src);
        await retrySucceeds(src);
      } finally {
        proxy.close();
        dst.close();
        await endSource(src);
      }
    }, 300_000);
  }

  it('the link cut in stop-and-copy (READY lost): the source resumes the VM, a retry succeeds', async () => {
    const src = await pausedSource();
    const dst = await startDestination({ populate: 'lazy' });
    dst.result.catch(() => undefined);
    // The destination's second frame is READY: cut both ways when it goes out.
    const proxy = await startProxy(dst.port, { kind: 'none' });
    const { createServer, createConnection } = await import('node:net');
    let upFrames = 0;
    const cutter = createServer((client) => {
      const up = createConnection({ host: '127.0.0.1', port: proxy.port });
      client.on('data', (d) => up.write(d));
      up.on('data', (d: Buffer) => {
        // ACCEPT arrives with the preamble; the next frame (READY) is cut.
        if (upFrames++ >= 1) {
          up.destroy();
          client.destroy();
          return;
        }
        client.write(d);
      });
      client.on('error', () => up.destroy());
      up.on('error', () => client.destroy());
      client.on('close', () => up.destroy());
    });
    await new Promise<void>((r) => cutter.listen(0, '127.0.0.1', r));
    const port = (cutter.address() as { port: number }).port;
    try {
      const err = await migrateTo(src, port).then(
        () => null,
        (e: Error) => e,
      );
      expect((err as MigrationError).sourceVm).toBe('running');
      const refusal = await dst.result.then(
        () => null,
        (e: Error) => e,
      );
      expect(refusal?.message).toMatch(/incoming migration refused/);
      expect(dst.vmOwners()).toEqual([]);
      expect(dst.freeFrames()).toBeGreaterThanOrEqual(dst.initialFreeFrames - 3);
      expectUntouched(src);
      await retrySucceeds(src);
    } finally {
      cutter.close();
      proxy.close();
      dst.close();
      await endSource(src);
    }
  }, 300_000);

  it('a digest mismatch: the destination refuses before resuming and frees everything', async () => {
    const src = await pausedSource();
    const dst = await startDestination();
    dst.result.catch(() => undefined);
    // A peer that sends a well-formed stream whose END digest does not match the pages it sent.
    const socket = createConnection({ host: '127.0.0.1', port: dst.port });
    const enc = new FrameEncoder();
    const dec = new FrameDecoder('dst');
    const got: number[] = [];
    socket.on('data', (d: Buffer) => got.push(...dec.push(new Uint8Array(d)).map((f) => f.type)));
    try {
      await new Promise<void>((r) => socket.once('connect', () => r()));
      const vm = src.vm;
      socket.write(enc.next(FrameType.HELLO, encodeJson({ name: vm.name, vcpus: vm.vcpuCount, memBytes: vm.vmMemory.ramBytes, pcpus: 1 })));
      socket.write(enc.next(FrameType.PAGES, encodePages(1, [{ pfn: 0x100, bytes: vm.vmMemory.readPage(0x100000).slice() }])));
      socket.write(enc.next(FrameType.ROUND, encodeJson({ round: 1, pages: 1, zero: 0 })));
      socket.write(enc.next(FrameType.STATE, encodeSnapshot({ vm: vm.saveState(), hotPages: [] })));
      socket.write(enc.next(FrameType.END, encodeJson({ digest: '00'.repeat(32), nonZeroPages: 1, rounds: 1 })));
      const refusal = await dst.result.then(
        () => null,
        (e: Error) => e,
      );
      expect(refusal?.message).toMatch(/frame 4 \(END\) at offset \d+: field 'digest': guest memory digest [0-9a-f]{16}… \(1 non-zero pages\) does not match the source's 0000000000000000…/);
      await waitFor(() => got.includes(FrameType.REFUSE), 'the REFUSE frame');
      expect(got).not.toContain(FrameType.READY);
      expect(dst.vmOwners()).toEqual([]);
      expect(dst.freeFrames()).toBeGreaterThanOrEqual(dst.initialFreeFrames - 3);
    } finally {
      socket.destroy();
      dst.close();
      await endSource(src);
    }
  }, 300_000);

  it('a destination with too little RAM refuses before any page is sent', async () => {
    const src = await pausedSource();
    const dst = await startDestination({ capacity: 16 * MiB });
    dst.result.catch(() => undefined);
    try {
      const err = await migrateTo(src, dst.port).then(
        () => null,
        (e: Error) => e,
      );
      expect(err?.message).toMatch(/destination refused: not enough RAM for VM 'dirtier': it needs 64\.\d MiB .* this machine has \d+\.\d MiB free/);
      expect(dst.freeFrames()).toBe(dst.initialFreeFrames);
      expectUntouched(src);
      await retrySucceeds(src);
    } finally {
      dst.close();
      await endSource(src);
    }
  }, 300_000);
});
