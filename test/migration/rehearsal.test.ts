import { beforeAll, describe, expect, it } from 'vitest';
import { createConnection } from 'node:net';
import { buildImages } from '../../tools/build-images.mjs';
import { encodeJson, encodePages, FrameDecoder, FrameEncoder, FrameType, type Frame } from '../../vmm/migration/stream.js';
import { encodeSnapshot } from '../../machine/snapshot/codec.js';
import { closeSource, endSource, expectSameRun, migrateTo, referenceRun, startDestination, startSource, waitFor, type ReferenceRun, type Source } from './helpers.js';

/**
 * The destination's rehearsal: after round 1 the source sends the VM's state
 * as it is then (REHEARSE) and the destination loads it once, so the load
 * inside the downtime runs warm. A rehearsal record that does not load is a
 * refusal before any downtime; a real migration reports the rehearsal and the
 * switch-over's legs, and the joined transcript equals an unmigrated run.
 */
const MiB = 1024 * 1024;
let images: Record<string, string>;
let golden: ReferenceRun;
const SPEC = (): { path: string; memBytes: number; vcpus: number; cmdline: string } => ({ path: images['dirtier']!, memBytes: 64 * MiB, vcpus: 1, cmdline: 'mib=8 passes=6' });


describe('migration rehearsal', () => {
  beforeAll(async () => {
    images = (await buildImages({ quiet: true })).guests;
    golden = await referenceRun(SPEC());
  }, 120_000);

  it('the destination offers it, and a rehearsal record that does not load is refused before any STATE, freeing everything', async () => {
    const src = startSource(SPEC(), { pauseAtBytes: 120 });
    await waitFor(() => src.g.machine.paused || src.g.machine.exit !== null, 'the source to pause mid-run');
    const dst = await startDestination();
    dst.result.catch(() => undefined);
    const socket = createConnection({ host: '127.0.0.1', port: dst.port });
    const enc = new FrameEncoder();
    const dec = new FrameDecoder('dst');
    const got: Frame[] = [];
    socket.on('data', (d: Buffer) => got.push(...dec.push(new Uint8Array(d))));
    try {
      await new Promise<void>((r) => socket.once('connect', () => r()));
      const vm = src.vm;
      socket.write(enc.next(FrameType.HELLO, encodeJson({ name: vm.name, vcpus: vm.vcpuCount, memBytes: vm.vmMemory.ramBytes, pcpus: 1 })));
      await waitFor(() => got.length > 0, 'ACCEPT');
      expect(got[0]!.type).toBe(FrameType.ACCEPT);
      expect(JSON.parse(new TextDecoder().decode(got[0]!.payload))).toMatchObject({ rehearse: true });
      socket.write(enc.next(FrameType.PAGES, encodePages(1, [{ pfn: 0x100, bytes: vm.vmMemory.readPage(0x100000).slice() }])));
      socket.write(enc.next(FrameType.ROUND, encodeJson({ round: 1, pages: 1, zero: 0 })));
      // The state of a VM with another vCPU count: it cannot load into this one.
      socket.write(enc.next(FrameType.REHEARSE, encodeSnapshot({ vm: { ...vm.saveState(), vcpus: 2 }, hotPages: [] })));
      const refusal = await dst.result.then(
        () => null,
        (e: Error) => e,
      );
      expect(refusal?.message).toMatch(/incoming migration refused: vm .*'vcpus': record has 2 vCPUs, this VM 1/);
      await waitFor(() => got.some((f) => f.type === FrameType.REFUSE), 'the REFUSE frame');
      expect(got.map((f) => f.type)).not.toContain(FrameType.READY);
      expect(dst.vmOwners()).toEqual([]);
      expect(dst.freeFrames()).toBeGreaterThanOrEqual(dst.initialFreeFrames - 3);
    } finally {
      socket.destroy();
      dst.close();
      await endSource(src);
    }
  }, 300_000);

  it('a migration rehearses, reports the switch-over legs, and keeps the transcript', async () => {
    const src = startSource(SPEC(), { pauseAtBytes: 120 });
    await waitFor(() => src.g.machine.paused || src.g.machine.exit !== null, 'the source to pause mid-run');
    const dst = await startDestination();
    try {
      const report = await migrateTo(src, dst.port);
      expect(report.destination['rehearsalMs']).toBeGreaterThanOrEqual(0);
      expect(report.destination['buildCpuMs']).toBeGreaterThanOrEqual(0);
      for (const leg of ['endTransitMs', 'dstBuildMs', 'readyTransitMs', 'goTransitMs', 'dstStartMs', 'runningTransitMs']) expect(report.switchOver[leg], leg).toBeTypeOf('number');
      const done = await dst.result;
      expectSameRun(src.printed, done, golden);
    } finally {
      dst.close();
      if (src.g.machine.paused) src.g.machine.resume();
      await src.running.catch(() => undefined);
      closeSource(src);
    }
  }, 300_000);
});
