/**
 * Live migration from the command line (docs/migration.md):
 * - `firmament run --incoming tcp:HOST:PORT`: a machine that waits for one VM, then runs it;
 * - `firmament migrate --monitor SOCK --to tcp:HOST:PORT`: tells a running `run`/`boot` to
 *   migrate a VM there (the monitor's `migrate` command), with a progress line on a TTY;
 * - the monitor's `migrate` command itself (vmMigrateCommand).
 */
import { createConnection } from 'node:net';
import { parseArgs } from 'node:util';
export { INCOMING_HELP, isIncomingRun } from './incoming-option.js';
import type { Hypervisor } from '../../hypervisor/hypervisor.js';
import type { Vm } from '../../hypervisor/vm.js';
import type { MachineExit } from '../../machine/platform/pc.js';
import type { MigrateArgs } from '../../machine/debug/protocol.js';
import { DebugSession } from '../../machine/debug/session.js';
import { guestHost } from '../../vmm/run-guests.js';
import { defaultStoreDir } from '../../vmm/snapshot/index.js';
import { parseTcpUri } from '../../vmm/migration/channel.js';
import { listenIncoming, type IncomingPopulate } from '../../vmm/migration/destination.js';
import { migrateVm, type MigrationProgress } from '../../vmm/migration/source.js';
import { MAX_GUEST_RAM, parseCount, parseMemSize, parseTimeoutMs, parseTimerSlack, toJson, UsageError } from './args.js';
import { cliOutput } from './stdout.js';
import { claimSocketPath, monitorWhenReady } from './monitor-server.js';
import { guestHooks } from './guest-hooks.js';
import { vmByName, vmSnapshotCommands } from './vm-snapshots.js';

export const MIGRATE_HELP = `firmament migrate --monitor SOCK --to tcp:HOST:PORT [options]
  Live-migrates a VM of a running 'firmament run' or 'boot' (its --monitor socket) to a
  machine waiting with 'firmament run --incoming tcp:HOST:PORT'. Pre-copy rounds on the
  dirty log, then stop-and-copy; the VM leaves the source only once the destination runs it.
  Prints the JSON report; exit 1 when the migration failed (the source keeps the VM).

  --vm NAME             which VM (default: the first)
  --downtime-limit MS   stop-and-copy once the rest fits in MS (default 5)
  --bandwidth RATE      link limit in bytes/s (suffix K, M, G: KiB/s, MiB/s, GiB/s); default unlimited
  --no-auto-converge    never throttle the VM's vCPUs
  --json                no progress line, only the report`;

/** "4M" → 4 MiB/s; a plain number is bytes per second. */
export function parseBandwidth(text: string): number {
  const m = /^(\d+(?:\.\d+)?)([KMG]?)$/i.exec(text.trim());
  if (!m) throw new UsageError(`--bandwidth ${text}: expected a rate like 4M (MiB/s), 512K or 1000000 (bytes/s)`);
  const mult = { '': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3 }[m[2]!.toUpperCase() as '' | 'K' | 'M' | 'G'];
  const v = Number(m[1]) * mult;
  if (!(v >= 1)) throw new UsageError(`--bandwidth ${text}: must be at least 1 byte/s`);
  return v;
}

/** The monitor's `migrate` for a machine running VMs. */
export function vmMigrateCommand(hypervisor: Hypervisor): (args: MigrateArgs, progress: (p: Record<string, unknown>) => void) => Promise<Record<string, unknown>> {
  return async (args, progress) => {
    const vm = vmByName(hypervisor, args.vm);
    const target = parseTcpUri(args.uri);
    const report = await migrateVm(hypervisor, vm, target, {
      ...(args.downtimeLimitMs !== undefined ? { downtimeLimitMs: args.downtimeLimitMs } : {}),
      ...(args.bandwidth !== undefined ? { bandwidth: args.bandwidth } : {}),
      ...(args.autoConverge !== undefined ? { autoConverge: args.autoConverge } : {}),
      onProgress: (p) => progress({ ...p }),
    });
    // The machine's last VM left: this run is over (status 0, as QEMU's source after a completed migration).
    if (hypervisor.vms.length === 0) hypervisor.machine.finish({ reason: 'stopped', code: 0, detail: `VM '${vm.name}' migrated to ${args.uri}`, atNs: hypervisor.machine.now() });
    return { ...report };
  };
}


/** What the first 10 ms of guest time after resume cost (the populate modes are compared on these). */
export interface AfterResume {
  /** Wall time from the VM being scheduled to the end of its first slice. */
  firstSliceMs: number | null;
  eptViolations: number;
  lazyFaults: number;
  tlbFillWalks: number;
  /** Virtual-time units (bytes of guest code entered) in those 10 ms: instructions retired, as our clock counts them. */
  units: string;
}

/**
 * Watches the VM's first `windowNs` of guest time after resume, at the end of
 * each of its slices. It schedules nothing on the VM's clock: a timer there
 * would add a slice boundary and move where interrupts land (the transcript
 * tests would see it).
 */
export function measureAfterResume(hv: Hypervisor, vm: Vm, windowNs = 10_000_000): Promise<AfterResume> {
  const t0 = performance.now();
  const start = vm.clock.nowNs();
  const fills0 = vm.vcpus.reduce((n, v) => n + v.cpu.tlbFillWalks, 0);
  const units0 = vm.vcpus.reduce((n, v) => n + v.cpu.units, 0n);
  const ept0 = vm.vmMemory.eptViolations;
  const lazy0 = vm.vmMemory.lazyFaults;
  let firstSliceMs: number | null = null;
  const own = new Set(vm.vcpus.map((v) => v.cpu));
  const original = hv.onSliceExit;
  return new Promise((resolve) => {
    const finish = (): void => {
      hv.onSliceExit = original;
      resolve({
        firstSliceMs,
        eptViolations: vm.vmMemory.eptViolations - ept0,
        lazyFaults: vm.vmMemory.lazyFaults - lazy0,
        tlbFillWalks: vm.vcpus.reduce((n, v) => n + v.cpu.tlbFillWalks, 0) - fills0,
        units: String(vm.vcpus.reduce((n, v) => n + v.cpu.units, 0n) - units0),
      });
    };
    hv.onSliceExit = (cpu, exit, hostMs) => {
      original.call(hv, cpu, exit, hostMs);
      if (!own.has(cpu)) return;
      firstSliceMs ??= Math.round((performance.now() - t0) * 100) / 100;
      if (vm.clock.nowNs() - start >= windowNs || vm.state !== 'running') finish();
    };
  });
}

/** `firmament run --incoming tcp:HOST:PORT`. */
export async function incomingRunCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { incoming: { type: 'string' }, mem: { type: 'string' }, cpus: { type: 'string' }, populate: { type: 'string' }, clock: { type: 'string' }, 'timer-slack': { type: 'string' }, timeout: { type: 'string' }, json: { type: 'boolean' }, monitor: { type: 'string' }, store: { type: 'string' } },
  });
  if (positionals.length > 0) throw new UsageError('run --incoming: takes no guest image (the VM comes over the network)');
  let at: { host: string; port: number };
  try {
    at = parseTcpUri(values.incoming ?? '');
  } catch (e) {
    throw new UsageError(`--incoming: ${(e as Error).message}`);
  }
  const populate = (values.populate ?? 'prepopulate') as IncomingPopulate;
  if (populate !== 'prepopulate' && populate !== 'lazy') throw new UsageError(`--populate ${values.populate}: with --incoming, expected prepopulate or lazy`);
  const pace = values.clock ?? 'realtime';
  if (pace !== 'realtime' && pace !== 'virtual') throw new UsageError(`--clock ${pace}: expected realtime or virtual`);
  const capacity = parseMemSize(values.mem ?? '256M', '--mem', MAX_GUEST_RAM);
  const timeoutMs = parseTimeoutMs(values.timeout);
  const { out, err } = cliOutput();
  const { machine: m, hypervisor } = guestHost(capacity, { pcpus: parseCount(values.cpus, '--cpus', 1), pace, timerSlackMs: parseTimerSlack(values['timer-slack']) });
  let monitor: ReturnType<typeof monitorWhenReady> | null = null;
  try {
    const incoming = await listenIncoming(hypervisor, at, { populate });
    err.write(`firmament: waiting for a migration on tcp:${at.host}:${incoming.port}\n`);
    const { vm, report } = await incoming.result;
    const after = measureAfterResume(hypervisor, vm);
    if (!values.json) vm.onSerial = (t) => out.writeBytes(t);
    hypervisor.onAllStopped = () => {
      const e = vm.exit!;
      m.finish({ reason: e.reason === 'stopped' ? 'stopped' : e.reason, code: e.code, ...(e.detail ? { detail: e.detail } : {}), atNs: e.atNs ?? m.now() } as MachineExit);
    };
    if (values.monitor !== undefined) {
      monitor = monitorWhenReady(values.monitor);
      await claimSocketPath(values.monitor);
      monitor.attach(new DebugSession(m, { label: `VM ${vm.name} migrated in`, hooks: guestHooks(m, hypervisor), snapshots: vmSnapshotCommands(hypervisor, values.store ?? defaultStoreDir()), migrate: vmMigrateCommand(hypervisor) }));
    }
    const exit = await m.run(timeoutMs !== undefined ? { timeoutMs } : {});
    const afterResume = await Promise.race([after, Promise.resolve(null)]);
    if (values.json) out.write(toJson({ serial: vm.serial, exit, incoming: report, afterResume, guests: hypervisor.guestReports() }) + '\n');
    else if (exit.reason !== 'debug-exit') err.write(`\nfirmament: ${exit.reason}${exit.detail ? `: ${exit.detail}` : ''}\n`);
    return exit.code;
  } catch (e) {
    err.write(`firmament: ${(e as Error).message}\n`);
    return 2;
  } finally {
    await monitor?.close();
    hypervisor.close();
    m.close();
  }
}

const mib = (b: number): string => (b / 2 ** 20).toFixed(1);

function progressLine(p: MigrationProgress): string {
  return `migrate ${p.vm}: ${p.phase} round ${p.round}, ${mib(p.bytesSent)} MiB sent, ${mib(p.remainingBytes)} MiB remaining, dirty ${mib(p.dirtyRate)} MiB/s, throttle ${p.throttlePercent}%, expected downtime ${p.expectedDowntimeMs.toFixed(1)} ms`;
}

/** `firmament migrate --monitor SOCK --to tcp:HOST:PORT`. */
export async function migrateCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { monitor: { type: 'string' }, to: { type: 'string' }, vm: { type: 'string' }, 'downtime-limit': { type: 'string' }, bandwidth: { type: 'string' }, 'no-auto-converge': { type: 'boolean' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
  });
  if (values.help) {
    console.log(MIGRATE_HELP);
    return 0;
  }
  if (positionals.length > 0) throw new UsageError(`migrate: unexpected argument '${positionals[0]}'`);
  if (!values.monitor || !values.to) throw new UsageError('migrate: needs --monitor SOCK and --to tcp:HOST:PORT');
  try {
    parseTcpUri(values.to);
  } catch (e) {
    throw new UsageError(`--to: ${(e as Error).message}`);
  }
  const args: MigrateArgs = { uri: values.to };
  if (values.vm !== undefined) args.vm = values.vm;
  if (values['downtime-limit'] !== undefined) {
    const ms = Number(values['downtime-limit']);
    if (!(ms > 0)) throw new UsageError(`--downtime-limit ${values['downtime-limit']}: expected milliseconds > 0`);
    args.downtimeLimitMs = ms;
  }
  if (values.bandwidth !== undefined) args.bandwidth = parseBandwidth(values.bandwidth);
  if (values['no-auto-converge']) args.autoConverge = false;
  const { out, err } = cliOutput();
  const tty = process.stderr.isTTY && !values.json;
  const socket = createConnection(values.monitor);
  return new Promise<number>((resolve) => {
    let buf = '';
    socket.once('connect', () => socket.write(JSON.stringify({ id: 'migrate', cmd: 'migrate', args }) + '\n'));
    socket.on('error', (e) => {
      err.write(`firmament: monitor ${values.monitor}: ${e.message}\n`);
      resolve(2);
    });
    socket.on('data', (chunk) => {
      buf += chunk.toString('utf8');
      for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        let msg: { id?: string; ok?: boolean; result?: unknown; error?: string; event?: string; data?: unknown };
        try {
          msg = JSON.parse(line);
        } catch {
          continue;
        }
        if (msg.event === 'migration' && tty) err.write(`\r\x1b[K${progressLine(msg.data as MigrationProgress)}`);
        if (msg.id !== 'migrate') continue;
        if (tty) err.write('\n');
        socket.destroy();
        if (msg.ok) {
          out.write(toJson(msg.result) + '\n');
          resolve(0);
        } else {
          err.write(`firmament: ${msg.error}\n`);
          resolve(1);
        }
      }
    });
    socket.on('close', () => resolve(2));
  });
}
