/** `firmament run <guest.elf>`: boot a Multiboot image directly, like `qemu-system-x86_64 -kernel`. */
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { createGuestMachine } from '../../vmm/run-guests.js';
import { parseSize } from '../../machine/platform/faults.js';
import { parseTimerSlack, toJson, UsageError } from './args.js';
import { DebugSession } from '../../machine/debug/session.js';
import { claimSocketPath, monitorWhenReady } from './monitor-server.js';
import { guestHooks } from './guest-hooks.js';
import { snapshotSkipStatus, writeMachineSnapshot, type SnapshotOutcome } from './snapshot-file.js';
import { CLONE_HELP, cloneRunCommand, isCloneRun } from './clone.js';

export const RUN_HELP = `firmament run <guest.elf> [options] | firmament run --clone REF --count N [options]
  Runs a Multiboot v1 image as a VM under the micro-hypervisor (EPT-backed guest RAM,
  per-VM devices), as qemu-system-x86_64 -kernel does. The guest's COM1 goes to stdout;
  the exit status follows isa-debug-exit ((value << 1) | 1), as QEMU's does.

  --mem SIZE          guest RAM (default 64M)
  --vcpus N           virtual CPUs (default 1)
  --cpus N            logical CPUs of the host machine the vCPUs are scheduled on (default 1)
  --cmdline S         Multiboot command line (QEMU's -append)
  --timeout S         stop after S seconds of wall time (status 124)
  --clock MODE        realtime (default) or virtual
  --timer-slack MS    realtime: round idle wake-ups up to MS of wall time (default 4; 0 = every timer)
  --json              one JSON document: {serial, exit, guests: [{name, exit, serial, exits}], host: {wallMs, cpuMs}}
                      (host: wall and process CPU time from guest start to exit)
  --snapshot-on-exit FILE
                      when the machine stops (any reason), save its state to FILE ('firmament tui --restore FILE')
  --snapshot-unless-status N
                      with --snapshot-on-exit: skip the snapshot when the exit status is N
  --monitor SOCKET    serve the monitor protocol on this Unix socket (docs/monitor.md)
  --paused            with --monitor: start paused, resume from a monitor client
${CLONE_HELP}`;

export async function runCommand(argv: string[]): Promise<number> {
  if (isCloneRun(argv) && !argv.includes('--help') && !argv.includes('-h')) return cloneRunCommand(argv);
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { mem: { type: 'string' }, vcpus: { type: 'string' }, cpus: { type: 'string' }, cmdline: { type: 'string' }, timeout: { type: 'string' }, clock: { type: 'string' }, 'timer-slack': { type: 'string' }, json: { type: 'boolean' }, monitor: { type: 'string' }, 'snapshot-on-exit': { type: 'string' }, 'snapshot-unless-status': { type: 'string' }, paused: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
  });
  if (values.help) {
    console.log(RUN_HELP);
    return 0;
  }
  if (positionals.length !== 1) throw new UsageError('run: expected exactly one guest image (firmament run <guest.elf>)');
  if (values.paused && values.monitor === undefined) throw new UsageError('--paused needs --monitor (something has to resume the machine)');
  const vcpus = Number(values.vcpus ?? '1');
  if (!Number.isInteger(vcpus) || vcpus < 1 || vcpus > 64) throw new UsageError(`--vcpus ${values.vcpus}: expected 1..64`);
  const pace = values.clock ?? 'realtime';
  if (pace !== 'realtime' && pace !== 'virtual') throw new UsageError(`--clock ${pace}: expected realtime or virtual`);
  const snapshotUnless = snapshotSkipStatus(values['snapshot-unless-status']);
  const timeoutMs = values.timeout !== undefined ? Number(values.timeout) * 1000 : undefined;
  const pcpus = Number(values.cpus ?? '1');
  if (!Number.isInteger(pcpus) || pcpus < 1 || pcpus > 64) throw new UsageError(`--cpus ${values.cpus}: expected 1..64`);
  const guest = { path: positionals[0]!, memBytes: parseSize(values.mem ?? '64M', '--mem'), vcpus, ...(values.cmdline !== undefined ? { cmdline: values.cmdline } : {}) };
  const { machine: m, hypervisor, vms } = createGuestMachine([guest], { pcpus, pace, timerSlackMs: parseTimerSlack(values['timer-slack']) });
  if (!values.json) vms[0]!.onSerial = (t) => process.stdout.write(t);
  const monitor = values.monitor !== undefined ? monitorWhenReady(values.monitor) : null;
  if (monitor && values.monitor !== undefined) {
    await claimSocketPath(values.monitor);
    const session = new DebugSession(m, { label: `guest ${positionals[0]}`, hooks: guestHooks(m, hypervisor) });
    if (values.paused) session.debugger.pause();
    monitor.attach(session);
  }
  try {
    const cpu0 = process.cpuUsage();
    const wall0 = performance.now();
    const exit = await m.run(timeoutMs !== undefined ? { timeoutMs } : {});
    // What running the guest cost the host, start-up excluded: every thread of this process (V8's compiler threads too).
    const cpu = process.cpuUsage(cpu0);
    const host = { wallMs: Math.round((performance.now() - wall0) * 10) / 10, cpuMs: Math.round((cpu.user + cpu.system) / 100) / 10 };
    const snapshotFile = values['snapshot-on-exit'];
    const snapshot: SnapshotOutcome | undefined = snapshotFile !== undefined && exit.code !== snapshotUnless ? writeMachineSnapshot(snapshotFile, m, { command: 'run', pcpus, guests: [{ ...guest, path: resolve(guest.path) }] }) : undefined;
    if (values.json) {
      process.stdout.write(toJson({ serial: vms[0]!.serial, exit, guests: hypervisor.guestReports(), host, ...(snapshot ? { snapshot } : {}) }) + '\n');
    } else {
      if (exit.reason !== 'debug-exit') process.stderr.write(`\nfirmament: ${exit.reason}${exit.detail ? `: ${exit.detail}` : ''}\n`);
      if (snapshot) process.stderr.write('error' in snapshot ? `firmament: snapshot: ${snapshot.error}\n` : `firmament: snapshot: ${snapshot.file} (${snapshot.bytes} bytes)\n`);
    }
    return exit.code;
  } finally {
    await monitor?.close();
    hypervisor.close();
    m.close();
  }
}
