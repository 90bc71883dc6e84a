/** `firmament boot`: power on the default machine, stream COM1 and POST codes, report. */
import { parseArgs } from 'node:util';
import { boot, bootSucceeded, type BootReport } from '../../machine/platform/boot.js';
import { MACHINE_OPTION_SPEC, machineOptions, toJson } from './args.js';
import { ensureImages } from './images.js';

export const BOOT_HELP = `firmament boot [options]
  Powers on the emulated PC: reset vector, firmware POST, next stage.
  COM1 is shown live on stdout, POST codes on stderr.

  --mem SIZE          RAM size (default 64M; K/M/G suffixes)
  --cpus N            logical CPUs (default 1)
  --fault SPEC        inject a fault; repeatable:
                        ram:<addr>+<len>[:stuck|:flip]  bad RAM range (4 KiB aligned)
                        uart-dead                       COM1 absent / loopback fails
                        cmos-checksum                   CMOS checksum error
                        pit-stuck                       PIT never ticks
  --timeout S         stop after S seconds of wall time (exit reason "timeout")
  --seed N            seed for fault patterns (default 0)
  --clock MODE        realtime (idle sleeps in real time, default) or virtual (idle jumps ahead)
  --strict            fail when POST reported any error, even if the boot completed
  --json              print one JSON document on stdout instead of live output

  Exit status: 0 boot completed (next stage exited via isa-debug-exit with 0),
  1 boot failed, 2 emulator error or bad usage, 3 triple fault, 124 timeout.`;

export function exitStatus(r: BootReport, strict: boolean): number {
  if (bootSucceeded(r, strict)) return 0;
  if (r.exit.reason === 'timeout') return 124;
  if (r.exit.reason === 'error') return 2;
  if (r.exit.reason === 'triple-fault') return 3;
  return 1;
}

export async function bootCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { ...MACHINE_OPTION_SPEC, strict: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } }, strict: true });
  if (values.help) {
    console.log(BOOT_HELP);
    return 0;
  }
  const o = machineOptions(values);
  await ensureImages(o.json);
  const live = !o.json;
  const report = await boot(
    { memBytes: o.memBytes, cpus: o.cpus, faults: o.faults, seed: o.seed, pace: o.pace, ...(o.timeoutMs !== undefined ? { timeoutMs: o.timeoutMs } : {}) },
    live
      ? {
          onSerial: (t) => process.stdout.write(t),
          onPostCode: (p) => process.stderr.write(`\x1b[36m[post ${p.hex} ${p.name}]\x1b[0m${p.severity !== 'progress' ? ` \x1b[31m${p.severity}\x1b[0m` : ''}\n`),
        }
      : {},
  );
  if (o.json) {
    process.stdout.write(toJson(report) + '\n');
  } else {
    const stageText = report.stages.map((s) => `${s.name} ${s.startMs}-${s.endMs ?? '?'}ms`).join(', ');
    process.stderr.write(`\nexit: ${report.exit.reason} (code ${report.exit.code})${report.exit.detail ? `: ${report.exit.detail}` : ''}\nstages: ${stageText}\n`);
    if (report.postErrors.length) process.stderr.write(`POST errors: ${report.postErrors.map((p) => `${p.hex} ${p.name}`).join(', ')}\n`);
  }
  return exitStatus(report, values.strict === true);
}
