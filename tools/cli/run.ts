/** `firmament run <guest.elf>`: boot a Multiboot image directly, like `qemu-system-x86_64 -kernel`. */
import { parseArgs } from 'node:util';
import { createGuestMachine } from '../../hypervisor/run-guests.js';
import { MAX_GUEST_RAM, parseCount, parseMemSize, parseTimeoutMs, parseTimerSlack, toJson, UsageError } from './args.js';
import { cliOutput } from './stdout.js';
import { DebugSession } from '../../machine/debug/session.js';
import { claimSocketPath, monitorWhenReady } from './monitor-server.js';
import { guestHooks } from './guest-hooks.js';

export const RUN_HELP = `firmament run <guest.elf> [options]
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
  --monitor SOCKET    serve the monitor protocol on this Unix socket (docs/monitor.md)
  --paused            with --monitor: start paused, resume from a monitor client`;

export async function runCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { mem: { type: 'string' }, vcpus: { type: 'string' }, cpus: { type: 'string' }, cmdline: { type: 'string' }, timeout: { type: 'string' }, clock: { type: 'string' }, 'timer-slack': { type: 'string' }, json: { type: 'boolean' }, monitor: { type: 'string' }, paused: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
  });
  if (values.help) {
    console.log(RUN_HELP);
    return 0;
  }
  if (positionals.length !== 1) throw new UsageError('run: expected exactly one guest image (firmament run <guest.elf>)');
  if (values.paused && values.monitor === undefined) throw new UsageError('--paused needs --monitor (something has to resume the machine)');
  const vcpus = parseCount(values.vcpus, '--vcpus', 1);
  const pace = values.clock ?? 'realtime';
  if (pace !== 'realtime' && pace !== 'virtual') throw new UsageError(`--clock ${pace}: expected realtime or virtual`);
  const timeoutMs = parseTimeoutMs(values.timeout);
  const pcpus = parseCount(values.cpus, '--cpus', 1);
  const memBytes = parseMemSize(values.mem ?? '64M', '--mem', MAX_GUEST_RAM);
  const { out, err } = cliOutput();
  const { machine: m, hypervisor, vms } = createGuestMachine([{ path: positionals[0]!, memBytes, vcpus, ...(values.cmdline !== undefined ? { cmdline: values.cmdline } : {}) }], { pcpus, pace, timerSlackMs: parseTimerSlack(values['timer-slack']) });
  // COM1 is bytes: 0x80 and above go out as themselves, not re-encoded as UTF-8.
  if (!values.json) vms[0]!.onSerial = (t) => out.writeBytes(t);
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
    if (values.json) {
      out.write(toJson({ serial: vms[0]!.serial, exit, guests: hypervisor.guestReports(), host }) + '\n');
    } else if (exit.reason !== 'debug-exit') {
      err.write(`\nfirmament: ${exit.reason}${exit.detail ? `: ${exit.detail}` : ''}\n`);
    }
    return exit.code;
  } finally {
    await monitor?.close();
    hypervisor.close();
    m.close();
  }
}
