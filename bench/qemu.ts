/** Runs QEMU (the reference oracle) as a peer for benchmarks: wall time and host CPU time. */
import { spawnSync } from 'node:child_process';

export interface PeerRun {
  wallMs: number;
  cpuMs: number;
  status: number | null;
  stdout: string;
}

export function hasQemu(): boolean {
  return spawnSync('qemu-system-x86_64', ['--version'], { stdio: 'ignore' }).status === 0;
}

export const QEMU_ARGS = ['-serial', 'stdio', '-display', 'none', '-device', 'isa-debug-exit,iobase=0xf4,iosize=0x04', '-no-reboot', '-m', '64'];

export function runQemu(args: string[], timeoutMs = 120_000): PeerRun {
  return runMeasured(['qemu-system-x86_64', ...args], timeoutMs);
}

/**
 * Runs a command under `sh` and reads the shell's cutime/cstime afterwards, so
 * the CPU time is the command's own (user + system, all threads), not a
 * wall-clock guess.
 */
export function runMeasured(command: string[], timeoutMs = 120_000): PeerRun {
  const quoted = command.map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
  const script = `${quoted}; st=$?; echo; echo "@@STAT $(cat /proc/$$/stat) $st"`;
  const t0 = performance.now();
  const r = spawnSync('sh', ['-c', script], { encoding: 'utf8', timeout: timeoutMs });
  const wallMs = performance.now() - t0;
  const m = /@@STAT (.*) (\d+)\s*$/.exec(r.stdout ?? '');
  let cpuMs = NaN;
  let status: number | null = null;
  if (m) {
    // Fields after "(comm)": cutime and cstime are fields 16 and 17 (1-based).
    const afterComm = m[1]!.slice(m[1]!.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(afterComm[13]) + Number(afterComm[14]);
    cpuMs = (ticks * 1000) / 100; // USER_HZ
    status = Number(m[2]);
  }
  return { wallMs, cpuMs, status, stdout: (r.stdout ?? '').replace(/\n?@@STAT[\s\S]*$/, '') };
}
