import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildImages } from '../../tools/build-images.mjs';
import { cloneMachine, cloneSucceeded, snapshotAtCheckpoint } from '../../vmm/clones.js';
import { guestHost } from '../../vmm/run-guests.js';
import { translateForVcpu } from '../../hypervisor/translate.js';
import type { VmImage } from '../../hypervisor/hypervisor.js';
import { CloneSet } from '../../vmm/clones.js';

/**
 * Linked clones of the clone guest's checkpoint: each clone maps the base's
 * frames read-only, copies on write, and has its private writable range
 * (page tables, stack, pattern area) in frames of its own from the start.
 */
const MiB = 1024 * 1024;
const PAGE = 4096;
const PRIVATE = { gpa: 0x1ea000, length: 0x16000 };
const PATTERN_GPA = 0x1f0000;
const SHARED_GPA = 0x200000;
const HIGH = 0xffffffff80000000n;
let base: VmImage;
let sharedChecksum: string;

beforeAll(async () => {
  const images = (await buildImages({ quiet: true })).guests;
  base = await snapshotAtCheckpoint({ path: images['clone']!, memBytes: 16 * MiB, vcpus: 1 }, { pcpus: 1, pace: 'virtual' });
  const m = /checksum (0x[0-9a-f]{16})/.exec(base.state['serial'] as string);
  sharedChecksum = m![1]!;
  expect(base.state['serial']).toContain('clone: ready');
}, 120_000);

describe('linked clones', () => {
  it('100 clones of a 16 MiB base: each writes its own pattern, sees the shared checksum, and host frames stay within base + 10% + private pages', async () => {
    const N = 100;
    const g = cloneMachine(base, { count: N, privateRanges: [PRIVATE], pcpus: 1, pace: 'virtual' });
    try {
      const exit = await g.machine.run({ timeoutMs: 600_000 });
      expect(exit.reason).toBe('debug-exit');
      const before = (base.state['serial'] as string).length;
      const privateChecksums = new Set<string>();
      g.vms.forEach((vm, i) => {
        expect(cloneSucceeded(vm), `${vm.name}: ${vm.exit?.detail}\n${vm.serial}`).toBe(true);
        const out = vm.serial.slice(before);
        const m = new RegExp(`^clone ${i}: private pattern ok, private checksum (0x[0-9a-f]{16}), shared checksum (0x[0-9a-f]{16})\\r\\n$`).exec(out);
        expect(m, out).not.toBeNull();
        expect(m![2]).toBe(sharedChecksum);
        privateChecksums.add(m![1]!);
      });
      expect(privateChecksums.size).toBe(N);

      const f = g.set.frames();
      const imageFrames = f.image;
      const privatePages = N * (PRIVATE.length / PAGE);
      const reports = g.set.memoryReports();
      // Nothing but the private range was written: no copy-on-write, every other page still shared.
      for (const r of reports) {
        expect(r.cowCopies).toBe(0);
        expect(r.privateBytes).toBe(PRIVATE.length);
        expect(r.sharedBytes).toBe(16 * MiB - PRIVATE.length);
      }
      expect(f.used - f.before).toBeLessThanOrEqual(imageFrames * 1.1 + privatePages);
      // Where the frames are: the image, private pages, 4 EPT tables per clone, control areas 16 to a frame, the MSR map.
      expect(reports.every((r) => r.eptTableFrames === 4)).toBe(true);
      expect(f.used - f.before).toBe(imageFrames + privatePages + 4 * N + Math.ceil(N / 16) + 2);

      g.set.destroy();
      expect(g.hypervisor.host.allocator.usedFrames - f.before).toBe(Math.ceil(N / 16) + 2);
    } finally {
      g.hypervisor.close();
      g.machine.close();
    }
  }, 600_000);

  it('copy-on-write: a write is seen by its clone only, and translate shows the private frame for it and the shared one elsewhere', async () => {
    const { machine, hypervisor } = guestHost(16 * MiB, { pcpus: 1, pace: 'virtual', extraHostBytes: 4 * MiB });
    try {
      const before = hypervisor.host.allocator.usedFrames;
      const set = CloneSet.create(hypervisor, base, { count: 3, privateRanges: [PRIVATE] });
      const [a, b, c] = set.clones as [typeof set.clones[0], typeof set.clones[0], typeof set.clones[0]];
      const page = SHARED_GPA + 5 * PAGE;
      const original = a.vmMemory.read(page, 16);
      const sharedHpa = set.image.frames.get(page)!;
      const hpaOf = (vm: typeof a, gpa: number) => translateForVcpu(vm.vcpus[0]!, HIGH + BigInt(gpa)).hpa;
      // Before any write: every clone's walk ends at the image's frame.
      for (const vm of set.clones) expect(hpaOf(vm, page)).toBe(BigInt(sharedHpa));

      const data = new Uint8Array(16).fill(0xa5);
      a.vmMemory.write(page, data);
      expect(a.vmMemory.read(page, 16)).toEqual(data);
      expect(b.vmMemory.read(page, 16)).toEqual(original);
      expect(c.vmMemory.read(page, 16)).toEqual(original);
      expect(hypervisor.host.memory.read(sharedHpa, 16)).toEqual(original);
      expect(a.vmMemory.stats().cowCopies).toBe(1);

      const written = hpaOf(a, page)!;
      expect(written).not.toBe(BigInt(sharedHpa));
      expect(hypervisor.host.memory.read(Number(written), 16)).toEqual(data);
      expect(hpaOf(b, page)).toBe(BigInt(sharedHpa));
      // The page next to it stays shared in the writer too.
      expect(hpaOf(a, page + PAGE)).toBe(BigInt(set.image.frames.get(page + PAGE)!));
      // Private range pages are the clone's own from the start, and differ between clones.
      const pa = hpaOf(a, PATTERN_GPA)!;
      const pb = hpaOf(b, PATTERN_GPA)!;
      expect(pa).not.toBe(BigInt(set.image.frames.get(PATTERN_GPA)!));
      expect(pa).not.toBe(pb);
      expect(a.vmMemory.read(PATTERN_GPA, 64)).toEqual(b.vmMemory.read(PATTERN_GPA, 64));

      set.destroy();
      // The MSR map and a control-area frame stay with the hypervisor; every RAM and EPT frame came back.
      expect(hypervisor.host.allocator.usedFrames - before).toBe(1 + 2);
      expect(hypervisor.host.references(sharedHpa)).toBe(0);
    } finally {
      hypervisor.close();
      machine.close();
    }
  });

  it('refuses a private range outside guest RAM, naming it, and holds no frames afterwards', () => {
    const { machine, hypervisor } = guestHost(16 * MiB, { pcpus: 1, pace: 'virtual' });
    try {
      const before = hypervisor.host.allocator.usedFrames;
      expect(() => CloneSet.create(hypervisor, base, { count: 1, privateRanges: [{ gpa: 16 * MiB, length: PAGE }] })).toThrow(/privateRanges\[0\]/);
      expect(() => CloneSet.create(hypervisor, base, { count: 1, privateRanges: [{ gpa: 0x1000 + 1, length: PAGE }] })).toThrow(/page-aligned/);
      expect(hypervisor.host.allocator.usedFrames).toBe(before);
    } finally {
      hypervisor.close();
      machine.close();
    }
  });
});
