/** `firmament run <guest.elf>`: boot a Multiboot image directly, like `qemu-system-x86_64 -kernel`. */
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { createGuestMachine, restoreGuestMachine } from '../../vmm/run-guests.js';
import { defaultStoreDir, SnapshotStore } from '../../vmm/snapshot/index.js';
import { MAX_GUEST_RAM, parseCount, parseMemSize, parseTimeoutMs, parseTimerSlack, toJson, UsageError } from './args.js';
import { cliOutput } from './stdout.js';
import { claimSocketPath, monitorWhenReady } from './monitor-server.js';
import { guestHooks } from './guest-hooks.js';
import { snapshotSkipStatus, writeMachineSnapshot, type SnapshotOutcome } from './snapshot-file.js';
import { gdbWhenReady, parseGdbAddress, parseGdbArch } from './gdb-server.js';
import { CLONE_HELP, cloneRunCommand, isCloneRun } from './clone.js';
import { idlePolicyOption } from './idle-policy-option.js';
import { INCOMING_HELP, isIncomingRun } from './incoming-option.js';
import { RTC_HELP_LINE, rtcOption } from './rtc-option.js';

export const RUN_HELP = `firmament run <guest.elf> [options] | firmament run --clone REF --count N [options]
  Runs a Multiboot v1 image as a VM under the micro-hypervisor (EPT-backed guest RAM,
  per-VM devices), as qemu-system-x86_64 -kernel does. The guest's COM1 goes to stdout;
  the exit status follows isa-debug-exit ((value << 1) | 1), as QEMU's does.

  --mem SIZE          guest RAM (default 64M)
  --vcpus N           virtual CPUs (default 1)
  --cpus N            logical CPUs of the host machine the vCPUs are scheduled on (default 1)
  --cmdline S         kernel command line (QEMU's -append)
  --initrd FILE       a Linux initrd (bzImage or PVH vmlinux), or the first Multiboot module (QEMU's -initrd)
  --module FILE[,CMDLINE]
                      a Multiboot (or PVH) module with its command line; repeat for more
  --serial-stdin      send what arrives on stdin to the guest's COM1 (type into a Linux shell)
  --timeout S         stop after S seconds of wall time (status 124)
  --clock MODE        realtime (default) or virtual
  --idle-policy P     how a vCPU's HLT/MWAIT idles: native (keeps its pCPU), emulated (gives it up),
                      adaptive (default; decides per idle period) or haltpoll (KVM's halt polling,
                      for comparison); docs/hypervisor.md "Idling"
  --timer-slack MS    realtime: round idle wake-ups up to MS of wall time (default 4; 0 = every timer)
${RTC_HELP_LINE}
  --json              one JSON document: {serial, exit, guests: [{name, exit, serial, exits, vcpus}], host: {wallMs, cpuMs}}
                      (vcpus[].idle: idle entries, time and wake latency per state, switches, decisions)
                      (host: wall and process CPU time from guest start to exit)
  --snapshot-on-exit FILE
                      when the machine stops (any reason), save its state to FILE ('firmament tui --restore FILE')
  --snapshot-unless-status N
                      with --snapshot-on-exit: skip the snapshot when the exit status is N
  --monitor SOCKET    serve the monitor protocol on this Unix socket (docs/monitor.md)
  --profile FILE      hold the VM to a behaviour profile from its first instruction; anomalies go
                      to stderr (and --json's "anomalies"); see firmament profile, docs/security.md
  --gdb tcp::PORT     serve the GDB remote protocol for the guest's VM: its vCPUs are gdb's
                      threads (docs/gdb.md); QEMU's -gdb
  --gdb-arch ARCH     x86-64 (default) or i386: the register layout for an i386 gdb (32-bit guest ELF)
  --paused            with --monitor or --gdb: start paused at the guest's entry (QEMU's -S)
  --restore REF       instead of an image: continue the VM saved as REF in the snapshot store
                      (firmament snapshot save), with its console, devices and virtual time
  --populate MODE     with --restore: eager (default) copies guest memory before the first
                      instruction; lazy maps each page on first touch (EPT violations counted)
  --shared-ram        host RAM in a shared-memory file (memfd), so 'firmament update' can hand the
                      running VMs to a new process in place (docs/live-update.md); also FIRMAMENT_SHARED_RAM=1
  --clone-room SIZE   host RAM kept beyond the guest's for linked clones made through the monitor
                      ('firmament snapshot clone'; default none beyond the hypervisor's own 32M)
  --store DIR         the snapshot store for --restore and the monitor's snapshot-save/-load
                      (default $FIRMAMENT_SNAPSHOTS, else ~/.local/share/firmament/snapshots)
${INCOMING_HELP}
${CLONE_HELP}`;

/** --initrd FILE and --module FILE[,CMDLINE] (the first comma splits; the command line may hold more). */
function bootFileOptions(initrd: string | undefined, modules: string[] | undefined): { initrd?: string; modules?: { path: string; cmdline?: string }[] } {
  const mods = (modules ?? []).map((m) => {
    const comma = m.indexOf(',');
    if (comma === 0) throw new UsageError(`--module ${m}: expected FILE[,CMDLINE]`);
    return comma < 0 ? { path: m } : { path: m.slice(0, comma), cmdline: m.slice(comma + 1) };
  });
  return { ...(initrd !== undefined ? { initrd } : {}), ...(mods.length > 0 ? { modules: mods } : {}) };
}

export async function runCommand(argv: string[]): Promise<number> {
  if (isCloneRun(argv) && !argv.includes('--help') && !argv.includes('-h')) return cloneRunCommand(argv);
  if (isIncomingRun(argv) && !argv.includes('--help') && !argv.includes('-h')) return (await import('./migrate.js')).incomingRunCommand(argv);
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { mem: { type: 'string' }, vcpus: { type: 'string' }, cpus: { type: 'string' }, cmdline: { type: 'string' }, initrd: { type: 'string' }, module: { type: 'string', multiple: true }, 'serial-stdin': { type: 'boolean' }, timeout: { type: 'string' }, clock: { type: 'string' }, 'timer-slack': { type: 'string' }, json: { type: 'boolean' }, monitor: { type: 'string' }, 'snapshot-on-exit': { type: 'string' }, 'snapshot-unless-status': { type: 'string' }, gdb: { type: 'string' }, 'gdb-arch': { type: 'string' }, paused: { type: 'boolean' }, restore: { type: 'string' }, store: { type: 'string' }, populate: { type: 'string' }, 'idle-policy': { type: 'string' }, profile: { type: 'string' }, 'shared-ram': { type: 'boolean' }, 'clone-room': { type: 'string' }, rtc: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
  });
  if (values.help) {
    console.log(RUN_HELP);
    return 0;
  }
  const restoring = values.restore !== undefined;
  if (positionals.length !== (restoring ? 0 : 1)) throw new UsageError(restoring ? 'run --restore REF: takes no guest image (the snapshot is the VM)' : 'run: expected exactly one guest image (firmament run <guest.elf>)');
  if (restoring && (values.initrd !== undefined || values.module !== undefined)) throw new UsageError('run --restore REF: --initrd and --module belong to a new guest, not a snapshot');
  const populate = values.populate ?? 'eager';
  if (populate !== 'eager' && populate !== 'lazy') throw new UsageError(`--populate ${populate}: expected eager or lazy`);
  const storeDir = values.store ?? defaultStoreDir();
  if (values.paused && values.monitor === undefined && values.gdb === undefined) throw new UsageError('--paused needs --monitor or --gdb (something has to resume the machine)');
  const gdbAddress = values.gdb !== undefined ? parseGdbAddress(values.gdb) : null;
  const vcpus = parseCount(values.vcpus, '--vcpus', 1);
  const pace = values.clock ?? 'realtime';
  if (pace !== 'realtime' && pace !== 'virtual') throw new UsageError(`--clock ${pace}: expected realtime or virtual`);
  const snapshotUnless = snapshotSkipStatus(values['snapshot-unless-status']);
  const timeoutMs = parseTimeoutMs(values.timeout);
  const pcpus = parseCount(values.cpus, '--cpus', 1);
  const idlePolicy = idlePolicyOption(values['idle-policy']);
  const memBytes = parseMemSize(values.mem ?? '64M', '--mem', MAX_GUEST_RAM);
  const { out, err } = cliOutput();
  const sharedRam = values['shared-ram'] === true || process.env['FIRMAMENT_SHARED_RAM'] === '1';
  if (sharedRam && (values.paused || gdbAddress)) throw new UsageError('--shared-ram (live update) does not combine with --paused or --gdb yet');
  const cloneRoom = values['clone-room'] !== undefined ? parseMemSize(values['clone-room'], '--clone-room', MAX_GUEST_RAM) : 0;
  const machineOpts = { pcpus, pace, timerSlackMs: parseTimerSlack(values['timer-slack']), sharedRam, rtcEpochSeconds: rtcOption(values.rtc), extraHostBytes: cloneRoom } as const;
  const guest = { path: positionals[0] ?? `snapshot:${values.restore}`, memBytes, vcpus, ...(values.cmdline !== undefined ? { cmdline: values.cmdline } : {}), ...bootFileOptions(values.initrd, values.module) };
  // A bad profile is refused before a machine is built.
  // Profiles and the security service (zod schemas) load only when asked for: plain runs start faster.
  const runProfile = values.profile !== undefined ? (await import('../../hypervisor/security/profile.js')).loadProfileFile(values.profile) : null;
  const securityModule = values.monitor !== undefined || values.profile !== undefined ? await import('../../vmm/security-commands.js') : null;
  const built = restoring ? restoreGuestMachine(await SnapshotStore.open(storeDir).load(values.restore!), { ...machineOpts, populate }) : createGuestMachine([guest], machineOpts);
  const { machine: m, hypervisor, vms } = built;
  const label = restoring ? `guest from snapshot ${values.restore}` : `guest ${positionals[0]}`;
  // With shared RAM this run can hand its VMs to a new process (monitor `update`; docs/live-update.md).
  const liveModule = built.sharedRam && built.shape ? await import('../../vmm/live-update/update.js') : null;
  const live = liveModule && built.sharedRam && built.shape ? new liveModule.LiveUpdateHost(m, hypervisor, built.shape, built.sharedRam, { json: values.json === true, monitor: values.monitor ?? null, storeDir, deadline: timeoutMs !== undefined ? Date.now() + timeoutMs : null, label }) : null;
  hypervisor.idlePolicy = idlePolicy;
  // COM1 is bytes: 0x80 and above go out as themselves, not re-encoded as UTF-8. After a restore only
  // what the VM prints from now on goes to stdout (--json has the whole transcript).
  if (!values.json) vms[0]!.onSerial = (t) => out.writeBytes(t);
  // Behaviour profiles: the security service watches the VM from before its first instruction.
  const security = securityModule ? securityModule.startSecurity(hypervisor, runProfile ? [{ profile: runProfile }] : []) : null;
  if (security && runProfile && !values.json) security.onAnomaly((a) => err.write(`firmament: anomaly: ${a.vm}: ${a.description} (${a.severity}, rip ${a.rip}, at ${a.atMs.toFixed(1)} ms)\n`));
  // A debugger attached may still resume, poke or interrupt a guest that waits for nothing: never call it dead.
  if (values.monitor !== undefined || gdbAddress) m.interactive = true;
  const fromStdin = (b: Buffer): void => vms[0]!.uart.receive(b);
  if (values['serial-stdin']) {
    // Input may still arrive on stdin: a guest waiting for it is not dead.
    m.interactive = true;
    process.stdin.on('data', fromStdin);
  }
  let monitor: { close(): Promise<void> } | null = null;
  if (values.monitor !== undefined) {
    // The debugger (request schemas, disassembler) and the VM services load only for a monitor: plain runs start faster.
    const [{ vmSnapshotCommands, vmCloneCommand }, { backupCommand }, { vmMigrateCommand }] = await Promise.all([import('./vm-snapshots.js'), import('../../vmm/backup/index.js'), import('./migrate.js')]);
    const services = { backup: backupCommand(hypervisor, storeDir), migrate: vmMigrateCommand(hypervisor), clones: vmCloneCommand(hypervisor, storeDir), ...(security && securityModule ? { security: securityModule.securityCommands(security) } : {}) };
    if (live) {
      // The monitor of a run that can be updated: its socket moves to the successor with the VMs.
      const lm = (await import('./takeover.js')).liveMonitor(values.monitor, m, hypervisor, live, { label, storeDir, services });
      await lm.ready;
      monitor = lm;
    } else {
      const server = monitorWhenReady(values.monitor);
      await claimSocketPath(values.monitor);
      const { DebugSession } = await import('../../machine/debug/session.js');
      const session = new DebugSession(m, { label, hooks: guestHooks(m, hypervisor), snapshots: vmSnapshotCommands(hypervisor, storeDir), ...services });
      if (values.paused) session.debugger.pause();
      server.attach(session);
      monitor = server;
    }
  }
  const gdb = gdbAddress ? gdbWhenReady({ address: gdbAddress, vm: vms[0]!.name, paused: values.paused === true, wholeMachine: true, arch: parseGdbArch(values['gdb-arch']) }) : null;
  gdb?.onHypervisor(hypervisor);
  try {
    const cpu0 = process.cpuUsage();
    const wall0 = performance.now();
    const exit = await m.run(timeoutMs !== undefined ? { timeoutMs } : {});
    // Handed over (live update): the last process of the chain reports the guest's status.
    if (live?.handedOver) {
      await live.released;
      return await live.afterHandover();
    }
    // What running the guest cost the host, start-up excluded: every thread of this process (V8's compiler threads too).
    const cpu = process.cpuUsage(cpu0);
    const host = { wallMs: Math.round((performance.now() - wall0) * 10) / 10, cpuMs: Math.round((cpu.user + cpu.system) / 100) / 10 };
    const snapshotFile = values['snapshot-on-exit'];
    const snapshot: SnapshotOutcome | undefined = snapshotFile !== undefined && exit.code !== snapshotUnless ? writeMachineSnapshot(snapshotFile, m, { command: 'run', pcpus, guests: [{ ...guest, path: restoring ? guest.path : resolve(guest.path) }] }, () => hypervisor.vms.map((vm) => hypervisor.snapshotVm(vm))) : undefined;
    if (values.json) {
      out.write(toJson({ serial: vms[0]!.serial, exit, guests: hypervisor.guestReports(), host, ...(snapshot ? { snapshot } : {}), ...(security ? { anomalies: security.anomalies() } : {}) }) + '\n');
    } else {
      if (exit.reason !== 'debug-exit') err.write(`\nfirmament: ${exit.reason}${exit.detail ? `: ${exit.detail}` : ''}\n`);
      if (snapshot) err.write('error' in snapshot ? `firmament: snapshot: ${snapshot.error}\n` : `firmament: snapshot: ${snapshot.file} (${snapshot.bytes} bytes)\n`);
    }
    return exit.code;
  } finally {
    if (values['serial-stdin']) {
      process.stdin.off('data', fromStdin);
      process.stdin.destroy();
    }
    await gdb?.close();
    await monitor?.close();
    if (!live?.handedOver) {
      security?.close();
      hypervisor.close();
    }
    m.close();
  }
}
