/** `firmament run <guest.elf>`: boot a Multiboot image directly, like `qemu-system-x86_64 -kernel`. */
import { parseArgs } from 'node:util';
import { createDirectBootMachine } from '../../machine/platform/direct-boot.js';
import { parseSize } from '../../machine/platform/faults.js';
import { toJson, UsageError } from './args.js';

export const RUN_HELP = `firmament run <guest.elf> [options]
  Boots a Multiboot v1 image directly (no firmware), as qemu-system-x86_64 -kernel does.
  COM1 goes to stdout; the exit status follows isa-debug-exit ((value << 1) | 1), as QEMU's does.

  --mem SIZE          guest RAM (default 64M)
  --vcpus N           virtual CPUs (default 1)
  --cmdline S         Multiboot command line (QEMU's -append)
  --timeout S         stop after S seconds of wall time (status 124)
  --clock MODE        realtime (default) or virtual
  --json              one JSON document: {serial, exit, counters}`;

export async function runCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { mem: { type: 'string' }, vcpus: { type: 'string' }, cmdline: { type: 'string' }, timeout: { type: 'string' }, clock: { type: 'string' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
  });
  if (values.help) {
    console.log(RUN_HELP);
    return 0;
  }
  if (positionals.length !== 1) throw new UsageError('run: expected exactly one guest image (firmament run <guest.elf>)');
  const vcpus = Number(values.vcpus ?? '1');
  if (!Number.isInteger(vcpus) || vcpus < 1 || vcpus > 64) throw new UsageError(`--vcpus ${values.vcpus}: expected 1..64`);
  const pace = values.clock ?? 'realtime';
  if (pace !== 'realtime' && pace !== 'virtual') throw new UsageError(`--clock ${pace}: expected realtime or virtual`);
  const timeoutMs = values.timeout !== undefined ? Number(values.timeout) * 1000 : undefined;
  const m = createDirectBootMachine({ kernelPath: positionals[0]!, memBytes: parseSize(values.mem ?? '64M', '--mem'), cpus: vcpus, pace, ...(values.cmdline !== undefined ? { cmdline: values.cmdline } : {}) });
  if (!values.json) m.onSerial = (t) => process.stdout.write(t);
  try {
    const exit = await m.run(timeoutMs !== undefined ? { timeoutMs } : {});
    if (values.json) {
      const counters = m.cpus.map((c) => ({ cpu: c.index, ...c.counters }));
      process.stdout.write(toJson({ serial: m.serial, exit, counters }) + '\n');
    } else if (exit.reason !== 'debug-exit') {
      process.stderr.write(`\nfirmament: ${exit.reason}${exit.detail ? `: ${exit.detail}` : ''}\n`);
    }
    return exit.code;
  } finally {
    m.close();
  }
}
