/**
 * Linked clones in the bench: how long one clone takes to create, and how
 * many host frames 100 clones of a 16 MiB base use after they have run.
 * QEMU has no linked clones in one process; its columns say n/a.
 */
import { cloneMachine, cloneSucceeded, snapshotAtCheckpoint } from '../vmm/clones.js';
import { median, quantile, type BenchRow } from './row.js';

const MiB = 1024 * 1024;
const COUNT = 100;
/** The clone guest's private writable range: page tables, stack, pattern area. */
const PRIVATE = { gpa: 0x1ea000, length: 0x16000 };

export async function cloneBenchRows(cloneGuest: string): Promise<BenchRow[]> {
  const base = await snapshotAtCheckpoint({ path: cloneGuest, memBytes: 16 * MiB, vcpus: 1 }, { pcpus: 1, pace: 'virtual' });
  const g = cloneMachine(base, { count: COUNT, privateRanges: [PRIVATE], pcpus: 1, pace: 'virtual' });
  try {
    await g.machine.run({ timeoutMs: 600_000 });
    const ok = g.vms.filter(cloneSucceeded).length;
    const ms = g.set.createMs;
    const f = g.set.frames();
    const used = f.used - f.before;
    const privatePages = COUNT * (PRIVATE.length / 4096);
    const bound = f.image * 1.1 + privatePages;
    const eptFrames = g.set.memoryReports().reduce((n, r) => n + r.eptTableFrames, 0);
    return [
      {
        metric: `clone creation time (per clone, median of ${COUNT})`,
        firmament: `${median(ms).toFixed(1)} ms`,
        qemu: 'n/a',
        ratio: 'n/a',
        note: `16 MiB base, 88 KiB private range; p10 ${quantile(ms, 0.1).toFixed(1)} ms, p90 ${quantile(ms, 0.9).toFixed(1)} ms, min ${Math.min(...ms).toFixed(1)}, max ${Math.max(...ms).toFixed(1)} (the first includes JIT warm-up)`,
      },
      {
        metric: `host frames used by ${COUNT} clones (vs base)`,
        firmament: `${used} frames (${((used * 4096) / MiB).toFixed(1)} MiB)`,
        qemu: 'n/a',
        ratio: (used / f.image).toFixed(2),
        note: `after all ran (${ok}/${COUNT} ok): base image ${f.image} + private ${privatePages} + EPT tables ${eptFrames} + control areas/MSR map ${used - f.image - privatePages - eptFrames}; bound base+10%+private = ${bound.toFixed(1)}`,
      },
    ];
  } finally {
    g.set.destroy();
    g.hypervisor.close();
    g.machine.close();
  }
}
