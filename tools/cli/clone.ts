/**
 * `firmament run --clone REF --count N`: N linked clones of a snapshot in the
 * snapshot store, in one machine (vmm/clones.ts); and
 * `firmament run <guest.elf> --checkpoint REF`: run a guest to its CHECKPOINT
 * hypercall and save it into the store, the base such clones start from.
 */
import { parseArgs } from 'node:util';
import { defaultStoreDir, SnapshotStore } from '../../vmm/snapshot/index.js';
import { cloneMachine, cloneSucceeded, snapshotAtCheckpoint } from '../../vmm/clones.js';
import type { GpaRange } from '../../hypervisor/memory/guest-memory.js';
import { parseSize } from '../../machine/platform/faults.js';
import { parseTimerSlack, toJson, UsageError } from './args.js';

export const CLONE_HELP = `  --clone REF         run linked clones of snapshot REF from the snapshot store instead of an image:
                      every clone maps the snapshot's memory read-only and copies a page on its
                      first write (docs/vm-state.md); each clone's console is prefixed [name]
  --count N           with --clone: how many clones (default 1)
  --private GPA+LEN   with --clone: a range each clone gets private frames for from the start
                      (e.g. 0x1ea000+88K; repeatable); the clone guest's range is 0x1ea000+88K
  --store DIR         the snapshot store (default $FIRMAMENT_SNAPSHOTS, else ~/.local/share/firmament/snapshots)
  --checkpoint REF    run <guest.elf> until its CHECKPOINT hypercall and save the VM as REF
                      (the base for --clone); --force replaces an existing REF
                      Clone exit status: 0 when every clone exited through isa-debug-exit with 0,
                      1 when any did not, 124 on --timeout; --json adds per-clone shared/private bytes`;

/** Whether `firmament run` should hand these arguments to this module. */
export function isCloneRun(argv: readonly string[]): boolean {
  return argv.some((a) => a === '--clone' || a.startsWith('--clone=') || a === '--checkpoint' || a.startsWith('--checkpoint='));
}

/** GPA+LEN, each a number (0x hex or decimal) or a size with K/M/G. */
export function parsePrivateRange(s: string): GpaRange {
  const m = /^([^+]+)\+(.+)$/.exec(s.trim());
  if (!m) throw new UsageError(`--private ${s}: expected GPA+LEN, e.g. 0x1ea000+88K`);
  const num = (v: string, what: string): number => {
    const n = /^0x[0-9a-f]+$/i.test(v) ? Number.parseInt(v, 16) : parseSizeOrNull(v);
    if (n === null || !Number.isSafeInteger(n)) throw new UsageError(`--private ${s}: ${what} '${v}' is not a number or size`);
    return n;
  };
  const gpa = num(m[1]!, 'GPA');
  const length = num(m[2]!, 'LEN');
  if (gpa % 4096 !== 0 || length % 4096 !== 0 || length === 0) throw new UsageError(`--private ${s}: GPA and LEN must be non-zero multiples of 4 KiB`);
  return { gpa, length };
}

function parseSizeOrNull(v: string): number | null {
  try {
    return parseSize(v);
  } catch {
    return null;
  }
}

export async function cloneRunCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      clone: { type: 'string' },
      count: { type: 'string' },
      private: { type: 'string', multiple: true },
      store: { type: 'string' },
      checkpoint: { type: 'string' },
      force: { type: 'boolean' },
      mem: { type: 'string' },
      vcpus: { type: 'string' },
      cpus: { type: 'string' },
      cmdline: { type: 'string' },
      timeout: { type: 'string' },
      clock: { type: 'string' },
      'timer-slack': { type: 'string' },
      json: { type: 'boolean' },
    },
  });
  const pace = values.clock ?? 'realtime';
  if (pace !== 'realtime' && pace !== 'virtual') throw new UsageError(`--clock ${pace}: expected realtime or virtual`);
  const pcpus = Number(values.cpus ?? '1');
  if (!Number.isInteger(pcpus) || pcpus < 1 || pcpus > 64) throw new UsageError(`--cpus ${values.cpus}: expected 1..64`);
  const timeoutMs = values.timeout !== undefined ? Number(values.timeout) * 1000 : undefined;
  if (timeoutMs !== undefined && !(Number.isFinite(timeoutMs) && timeoutMs > 0)) throw new UsageError(`--timeout ${values.timeout}: expected seconds > 0`);
  const store = SnapshotStore.open(values.store ?? defaultStoreDir());
  const machineOpts = { pcpus, pace, timerSlackMs: parseTimerSlack(values['timer-slack']) } as const;

  if (values.checkpoint !== undefined) {
    if (values.clone !== undefined) throw new UsageError('--checkpoint and --clone do not go together (save a base first, then clone it)');
    if (positionals.length !== 1) throw new UsageError('run --checkpoint REF: expected exactly one guest image');
    const vcpus = Number(values.vcpus ?? '1');
    if (!Number.isInteger(vcpus) || vcpus < 1 || vcpus > 64) throw new UsageError(`--vcpus ${values.vcpus}: expected 1..64`);
    const guest = { path: positionals[0]!, memBytes: parseSize(values.mem ?? '64M', '--mem'), vcpus, ...(values.cmdline !== undefined ? { cmdline: values.cmdline } : {}) };
    const image = await snapshotAtCheckpoint(guest, { ...machineOpts, ...(timeoutMs !== undefined ? { timeoutMs } : {}) });
    const r = await store.save(values.checkpoint, { ...image, meta: { 'org.firmament.checkpoint': 'CHECKPOINT hypercall' } }, { force: values.force === true });
    const doc = { ref: r.ref, digest: r.digest, serial: image.state['serial'] };
    if (values.json) process.stdout.write(toJson(doc) + '\n');
    else process.stdout.write(`${String(image.state['serial'])}firmament: saved the VM at its checkpoint as ${r.ref} (${r.digest.slice(0, 19)}…) in ${store.dir}\n`);
    return 0;
  }

  if (positionals.length > 0) throw new UsageError('run --clone REF takes no guest image (the snapshot is the guest)');
  for (const k of ['mem', 'vcpus', 'cmdline'] as const) if (values[k] !== undefined) throw new UsageError(`--${k} does not go with --clone: the snapshot fixes it`);
  const count = Number(values.count ?? '1');
  if (!Number.isInteger(count) || count < 1 || count > 4096) throw new UsageError(`--count ${values.count}: expected 1..4096`);
  const privateRanges = (values.private ?? []).map(parsePrivateRange);
  const snap = await store.load(values.clone!);
  const t0 = performance.now();
  const g = cloneMachine(snap, { count, privateRanges, name: values.clone!, ...machineOpts });
  const createMs = performance.now() - t0;
  try {
    // Each clone's console from where the snapshot left off, a line at a time, prefixed with its name.
    const inherited = String(snap.state['serial'] ?? '').length;
    if (!values.json) {
      for (const vm of g.vms) {
        let line = '';
        vm.onSerial = (t) => {
          line += t;
          for (let nl = line.indexOf('\n'); nl >= 0; nl = line.indexOf('\n')) {
            process.stdout.write(`[${vm.name}] ${line.slice(0, nl + 1)}`);
            line = line.slice(nl + 1);
          }
        };
      }
    }
    const exit = await g.machine.run(timeoutMs !== undefined ? { timeoutMs } : {});
    const reports = g.set.memoryReports();
    const clones = g.vms.map((vm, i) => ({ ...reports[i]!, exit: vm.exit, ok: cloneSucceeded(vm), serial: vm.serial.slice(inherited) }));
    const frames = g.set.frames();
    const status = exit.reason === 'timeout' ? 124 : clones.every((c) => c.ok) ? 0 : 1;
    if (values.json) {
      process.stdout.write(toJson({ snapshot: values.clone, count, privateRanges, createMs: Math.round(createMs * 10) / 10, exit, status, frames, clones }) + '\n');
    } else {
      const kib = (b: number) => `${(b / 1024).toFixed(0)} KiB`;
      for (const c of clones) {
        const how = c.exit ? `${c.exit.reason} code ${c.exit.code}${c.exit.detail ? ` (${c.exit.detail})` : ''}` : 'still running';
        process.stdout.write(`${c.name}: ${c.ok ? 'ok' : 'FAILED'}, ${how}; shared ${kib(c.sharedBytes)}, private ${kib(c.privateBytes)}, ${c.cowCopies} copied on write, ${c.eptTableFrames} EPT table frames\n`);
      }
      process.stdout.write(`firmament: ${clones.filter((c) => c.ok).length}/${count} clones ok; host frames: ${frames.image} image + ${frames.clones} for the clones (private pages and EPT tables), ${frames.used - frames.before} in use in all; created in ${createMs.toFixed(0)} ms\n`);
    }
    return status;
  } finally {
    g.set.destroy();
    g.hypervisor.close();
    g.machine.close();
  }
}
