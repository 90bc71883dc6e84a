/** Command dispatch for `firmament`. */
import { UsageError } from './args.js';
import { reportCliError } from './errors.js';
import { cliOutput } from './stdout.js';
import { BOOT_HELP, bootCommand } from './boot.js';
import { BENCH_HELP, benchCommand } from './bench.js';
import { RUN_HELP, runCommand } from './run.js';
import { TUI_HELP, tuiCommand } from './tui.js';
import { INSPECT_HELP, inspectCommand } from './inspect.js';
import { TRANSLATE_HELP, translateCommand } from './translate.js';
import { CONTAINERS_HELP, containersCommand } from './containers.js';
import { SNAPSHOT_HELP, snapshotCommand } from './snapshot.js';
import { TEST_HELP, testCommand } from './test.js';
import { UPDATE_HELP, updateCommand } from './update.js';
import { takeoverCommand } from './takeover.js';

const HELP = `firmament: a bare-metal boot and firmware environment emulator

Usage: firmament <command> [options]

Commands:
  boot        power on the emulated PC and run firmware POST and the next stage
  run         boot a Multiboot guest image directly (like qemu -kernel)
  translate   show a guest's GVA -> GPA -> HPA walk, every level of both tables
  containers  list, build or verify the firmware containers (OCI images)
  snapshot    list, inspect, verify, diff, push or pull VM snapshots (OCI artifacts)
  bench       measure emulation speed, boot time and idle cost (vs QEMU when installed)
  tui         terminal UI: inspect and debug the machine live (or --attach to a --monitor socket)
  inspect     run to a stop point (breakpoint, POST code, exit) and print the inspection views as JSON
  test        run suites of boot tests in parallel workers; JUnit and JSON reports, shards, --merge
  update      live update: a new Firmament process takes a running 'run --shared-ram' over in place
  help        this text

${BOOT_HELP}

${RUN_HELP}

${TRANSLATE_HELP}

${CONTAINERS_HELP}

${SNAPSHOT_HELP}

${BENCH_HELP}

${TUI_HELP}

${INSPECT_HELP}

${TEST_HELP}
${UPDATE_HELP}`;

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  // Before any output: a closed stdout (EPIPE, ENOSPC) must not crash the run.
  cliOutput();
  try {
    switch (cmd) {
      case 'boot':
        return await bootCommand(rest);
      case 'run':
        return await runCommand(rest);
      case 'translate':
        return await translateCommand(rest);
      case 'containers':
        return await containersCommand(rest);
      case 'snapshot':
        return await snapshotCommand(rest);
      case 'bench':
        return await benchCommand(rest);
      case 'tui':
        return await tuiCommand(rest);
      case 'inspect':
        return await inspectCommand(rest);
      case 'test':
        return await testCommand(rest);
      case 'update':
        return await updateCommand(rest);
      case 'takeover': // hidden: the new process of a live update (vmm/live-update/update.ts)
        return await takeoverCommand(rest);
      case undefined:
      case 'help':
      case '--help':
      case '-h':
        console.log(HELP);
        return 0;
      default:
        throw new UsageError(`unknown command '${cmd}' (try 'firmament --help')`);
    }
  } catch (e) {
    return reportCliError(e, rest.includes('--json'));
  }
}
