/**
 * Bench row for issue 12: Debian's cloud kernel with the busybox initramfs
 * (node tools/fetch-linux.mjs puts both in .cache/linux), from start to the
 * busybox prompt on COM1, ours (`firmament run` path, in process) against
 * qemu-system-x86_64 TCG on the same files and command line. Wall time to the
 * first "/ # ", median and spread (min-max) of several runs; QEMU's includes
 * its process start and SeaBIOS, ours the machine's creation (no process start).
 *
 *   npx tsx bench/linux-boot.ts [runs]   just this row
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { createGuestMachine } from '../vmm/run-guests.js';
import { PROJECT_ROOT } from '../machine/cpu/unicorn/locate.js';
import { hasQemu } from './qemu.js';
import { median, type BenchRow } from './row.js';

const MiB = 1024 * 1024;
const PROMPT = '/ # ';
const CMDLINE = 'console=ttyS0';
const MEM_MIB = 256;
const TIMEOUT_MS = 600_000;

export const LINUX_FILES = { kernel: join(PROJECT_ROOT, '.cache/linux/vmlinuz'), initrd: join(PROJECT_ROOT, '.cache/linux/initramfs.cpio.gz') };

interface BootRun {
  /** Wall ms to the prompt (NaN: it never came). */
  ms: number;
  /** The kernel's own TSC line, e.g. "Detected 1999.884 MHz". */
  tsc: string;
}

const tscLine = (serial: string): string => /tsc: (Detected [\d.]+ MHz)/.exec(serial)?.[1] ?? 'no tsc line';

/** Ours: the same path as `firmament run vmlinuz --initrd ... --cmdline console=ttyS0 --mem 256M`. */
export async function firmamentToShell(): Promise<BootRun> {
  const t0 = performance.now();
  const { machine, hypervisor, vms } = createGuestMachine([{ path: LINUX_FILES.kernel, memBytes: MEM_MIB * MiB, vcpus: 1, initrd: LINUX_FILES.initrd, cmdline: CMDLINE }], { pcpus: 1, pace: 'realtime' });
  const vm = vms[0]!;
  let ms = NaN;
  vm.onSerial = () => {
    if (Number.isNaN(ms) && vm.serial.includes(PROMPT)) {
      ms = performance.now() - t0;
      machine.finish({ reason: 'stopped', code: 0, atNs: machine.now() });
    }
  };
  try {
    await machine.run({ timeoutMs: TIMEOUT_MS });
    return { ms, tsc: tscLine(vm.serial) };
  } finally {
    hypervisor.close();
    machine.close();
  }
}

/** QEMU TCG on the same files: killed as soon as the prompt is on its serial output. */
export function qemuToShell(): Promise<BootRun> {
  const args = ['-M', 'pc', '-m', String(MEM_MIB), '-display', 'none', '-serial', 'stdio', '-no-reboot', '-kernel', LINUX_FILES.kernel, '-initrd', LINUX_FILES.initrd, '-append', CMDLINE];
  return new Promise((resolve) => {
    const t0 = performance.now();
    const q = spawn('qemu-system-x86_64', args, { stdio: ['ignore', 'pipe', 'ignore'] });
    let out = '';
    let ms = NaN;
    const timer = setTimeout(() => q.kill('SIGKILL'), TIMEOUT_MS);
    q.stdout.setEncoding('latin1');
    q.stdout.on('data', (chunk: string) => {
      out += chunk;
      if (Number.isNaN(ms) && out.includes(PROMPT)) {
        ms = performance.now() - t0;
        q.kill('SIGKILL');
      }
    });
    q.on('close', () => {
      clearTimeout(timer);
      resolve({ ms, tsc: tscLine(out) });
    });
    q.on('error', () => resolve({ ms: NaN, tsc: 'qemu failed to start' }));
  });
}

const spread = (xs: number[]): string => {
  const s = xs.filter(Number.isFinite);
  return s.length === 0 ? 'n/a' : `${(Math.min(...s) / 1000).toFixed(2)}-${(Math.max(...s) / 1000).toFixed(2)} s`;
};
const seconds = (ms: number): string => (Number.isFinite(ms) ? `${(ms / 1000).toFixed(2)} s` : 'n/a');

export async function linuxBootRows(qemu: boolean, runs = 3): Promise<BenchRow[]> {
  const metric = 'Linux: start to busybox shell';
  if (!existsSync(LINUX_FILES.kernel) || !existsSync(LINUX_FILES.initrd)) {
    return [{ metric, firmament: 'n/a', qemu: 'n/a', ratio: 'n/a', note: 'kernel and initramfs not fetched: run `node tools/fetch-linux.mjs`' }];
  }
  const ours: BootRun[] = [];
  const theirs: BootRun[] = [];
  // Interleaved, so a burst of load on the shared machine hits both sides alike.
  for (let i = 0; i < runs; i++) {
    ours.push(await firmamentToShell());
    if (qemu) theirs.push(await qemuToShell());
  }
  const a = median(ours.map((r) => r.ms));
  const b = qemu ? median(theirs.map((r) => r.ms)) : NaN;
  const failed = ours.filter((r) => !Number.isFinite(r.ms)).length + theirs.filter((r) => !Number.isFinite(r.ms)).length;
  return [
    {
      metric,
      firmament: seconds(a),
      qemu: qemu ? seconds(b) : 'n/a',
      ratio: Number.isFinite(a) && Number.isFinite(b) ? (a / b).toFixed(2) : 'n/a',
      note: `median of ${runs}, spread ours ${spread(ours.map((r) => r.ms))}${qemu ? `, QEMU ${spread(theirs.map((r) => r.ms))}` : ''}; ${MEM_MIB} MiB, 1 vCPU, -append ${CMDLINE}; kernel's TSC: ours ${ours[0]!.tsc}${qemu ? `, QEMU ${theirs[0]!.tsc}` : ''}${failed ? `; ${failed} run(s) never reached the prompt` : ''}`,
    },
  ];
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const runs = Number(process.argv[2] ?? 3);
  for (const r of await linuxBootRows(hasQemu(), Number.isInteger(runs) && runs > 0 ? runs : 3)) console.log(JSON.stringify(r));
}
