/** Command dispatch for `firmament`. */
import { UsageError } from './args.js';
import { reportCliError } from './errors.js';
import { cliOutput } from './stdout.js';

// Each command's module is loaded only when it runs: the TUI (blessed), the test runner (TOML,
// XML), the OCI tools (zx) and the debugger (iced-x86, zod) cost start-up that `run` never needs.
const load = {
  boot: () => import('./boot.js'),
  run: () => import('./run.js'),
  translate: () => import('./translate.js'),
  containers: () => import('./containers.js'),
  snapshot: () => import('./snapshot.js'),
  bench: () => import('./bench.js'),
  tui: () => import('./tui.js'),
  inspect: () => import('./inspect.js'),
  test: () => import('./test.js'),
  migrate: () => import('./migrate.js'),
  serve: () => import('./serve.js'),
  backup: () => import('./backup.js'),
  profile: () => import('./profile.js'),
  anomalies: () => import('./anomalies.js'),
  update: () => import('./update.js'),
  takeover: () => import('./takeover.js'),
};

async function help(): Promise<string> {
  const [boot, run, translate, containers, snapshot, bench, tui, inspect, test, migrate, serve, backup, update] = await Promise.all([
    load.boot(), load.run(), load.translate(), load.containers(), load.snapshot(), load.bench(), load.tui(), load.inspect(), load.test(), load.migrate(), load.serve(), load.backup(), load.update(),
  ]);
  return `firmament: a bare-metal boot and firmware environment emulator

Usage: firmament <command> [options]

Commands:
  boot        power on the emulated PC and run firmware POST and the next stage
  run         boot a Multiboot guest image directly (like qemu -kernel)
  translate   show a guest's GVA -> GPA -> HPA walk, every level of both tables
  containers  list, build or verify the firmware containers (OCI images)
  snapshot    list, inspect, verify, diff, push or pull VM snapshots (OCI artifacts)
  migrate     live-migrate a running VM to a machine waiting with 'run --incoming' (tcp)
  bench       measure emulation speed, boot time and idle cost (vs QEMU when installed)
  tui         terminal UI: inspect and debug the machine live (or --attach to a --monitor socket)
  inspect     run to a stop point (breakpoint, POST code, exit) and print the inspection views as JSON
  test        run suites of boot tests in parallel workers; JUnit and JSON reports, shards, --merge
  serve       the function service: warm linked-clone VMs run uploaded functions over HTTP
  backup      an application-consistent snapshot of a running VM (quiesced through its guest agent)
  profile     learn, push, show or check VM behaviour profiles (firmament profile --help)
  anomalies   list or follow a running machine's anomaly notifications, --notify URL (firmament anomalies --help)
  update      live update: a new Firmament process takes a running 'run --shared-ram' over in place
  help        this text

${boot.BOOT_HELP}

${run.RUN_HELP}

${translate.TRANSLATE_HELP}

${containers.CONTAINERS_HELP}

${snapshot.SNAPSHOT_HELP}

${migrate.MIGRATE_HELP}

${bench.BENCH_HELP}

${tui.TUI_HELP}

${inspect.INSPECT_HELP}

${test.TEST_HELP}

${serve.SERVE_HELP}

${backup.BACKUP_HELP}

${update.UPDATE_HELP}`;
}

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  // Before any output: a closed stdout (EPIPE, ENOSPC) must not crash the run.
  cliOutput();
  try {
    switch (cmd) {
      case 'boot':
        return await (await load.boot()).bootCommand(rest);
      case 'run':
        return await (await load.run()).runCommand(rest);
      case 'translate':
        return await (await load.translate()).translateCommand(rest);
      case 'containers':
        return await (await load.containers()).containersCommand(rest);
      case 'snapshot':
        return await (await load.snapshot()).snapshotCommand(rest);
      case 'bench':
        return await (await load.bench()).benchCommand(rest);
      case 'tui':
        return await (await load.tui()).tuiCommand(rest);
      case 'inspect':
        return await (await load.inspect()).inspectCommand(rest);
      case 'test':
        return await (await load.test()).testCommand(rest);
      case 'migrate':
        return await (await load.migrate()).migrateCommand(rest);
      case 'serve':
        return await (await load.serve()).serveCommand(rest);
      case 'backup':
        return await (await load.backup()).backupCommand(rest);
      case 'profile':
        return await (await load.profile()).profileCommand(rest);
      case 'anomalies':
        return await (await load.anomalies()).anomaliesCommand(rest);
      case 'update':
        return await (await load.update()).updateCommand(rest);
      case 'takeover': // hidden: the new process of a live update (vmm/live-update/update.ts)
        return await (await load.takeover()).takeoverCommand(rest);
      case undefined:
      case 'help':
      case '--help':
      case '-h':
        console.log(await help());
        return 0;
      default:
        throw new UsageError(`unknown command '${cmd}' (try 'firmament --help')`);
    }
  } catch (e) {
    return reportCliError(e, rest.includes('--json'));
  }
}
