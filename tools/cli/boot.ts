/** `firmament boot`: power on the default machine, stream COM1 and POST codes, report. */
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { boot, bootSucceeded, machineMemoryFor, type BootGuest, type BootReport, type PostCodeRecord } from '../../vmm/boot.js';
import { checkJunitPath, writeBootJunit } from './junit.js';
import type { PcMachine } from '../../machine/platform/pc.js';
import { MACHINE_OPTION_SPEC, MAX_GUEST_RAM, MAX_MACHINE_RAM, machineOptions, parseCount, parseMemSize, toJson, UsageError } from './args.js';
import { cliOutput } from './stdout.js';
import { ensureImages } from './images.js';
import { claimSocketPath, monitorWhenReady } from './monitor-server.js';
import { bootHooks, type BootHooks } from './boot-hooks.js';
import { bootSecurity } from './boot-security.js';
import { deferClose, gdbWhenReady, parseGdbAddress, parseGdbArch } from './gdb-server.js';
import type { Handoff } from '../../machine/platform/handoff.js';
import type { Hypervisor } from '../../hypervisor/hypervisor.js';
import { idlePolicyOption } from './idle-policy-option.js';
import { RTC_HELP_LINE, rtcOption } from './rtc-option.js';
import { parseBootIncoming, waitForIncomingVm } from './boot-incoming.js';
import { snapshotSkipStatus, writeMachineSnapshot, type SnapshotOutcome } from './snapshot-file.js';

export const BOOT_HELP = `firmament boot [options]
  Powers on the emulated PC and runs the whole path: reset vector, firmware POST, the
  lightweight OS running the firmware containers (memory test, device probes,
  remediation), the handoff to the hypervisor, and the guests given with --guest.
  COM1 is shown live on stdout, POST codes and guest consoles on stderr.

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
  --timer-slack MS    realtime: round idle wake-ups up to MS of wall time (default 4; 0 = every timer)
${RTC_HELP_LINE}
  --guest ELF         a Multiboot guest for the hypervisor after the handoff; repeatable
  --guest-mem SIZE    RAM per guest (default 64M, as QEMU -m 64)
  --guest-vcpus N     vCPUs per guest (default 1)
  --idle-policy P     how a vCPU's HLT/MWAIT idles: native, emulated, adaptive (default) or haltpoll (see
                      docs/hypervisor.md "Idling")
  --guest-cmdline S   kernel command line for the guests (QEMU's -append)
  --guest-initrd FILE a Linux initrd for the guests (or their first Multiboot module)
  --registry URL      pull the firmware containers from an OCI registry instead of the
                      local layout: http://HOST:PORT/<prefix>[:tag] (every <prefix>/<name>)
  --incoming tcp:HOST:PORT
                      instead of --guest: after the handoff, wait for a VM migrated from another
                      machine (firmament migrate / the monitor's migrate) and run it; port 0 picks
                      one (printed on stderr). --guest-mem sizes the RAM offered (default 64M)
  --populate MODE     with --incoming: prepopulate (default) or lazy (docs/migration.md)
  --strict            fail when POST reported any error or a container did not pass
  --json              print one JSON document on stdout instead of live output
  --junit FILE        also write a JUnit XML report: POST, each container, the handoff, each guest
  --snapshot-on-exit FILE
                      when the machine stops (any reason, timeout included), save its state to FILE;
                      'firmament tui --restore FILE' opens it
  --snapshot-unless-status N
                      with --snapshot-on-exit: skip the snapshot when the exit status is N
                      (a test runner keeps snapshots of unexpected endings only)
  --monitor SOCKET    serve the monitor protocol on this Unix socket while the machine
                      runs (docs/monitor.md); 'firmament tui --attach SOCKET' connects
  --gdb tcp::PORT     serve the GDB remote protocol (QEMU's -gdb; loopback unless a host is
                      given): threads are the CPUs, or with --gdb-vm the VM's vCPUs (docs/gdb.md)
  --gdb-vm NAME       with --gdb: debug this guest's VM (stops only it; the others keep running)
  --gdb-arch ARCH     x86-64 (default) or i386: the register layout for an i386 gdb (32-bit ELF)
  --paused            with --monitor or --gdb: start paused (QEMU's -S); with --gdb-vm the VM
                      waits at its first instruction

  Exit status: 0 boot completed (the OS handed off; every guest exited through
  isa-debug-exit with 0), 1 boot failed, 2 emulator error, bad usage or bad input (a
  guest that could not be loaded is reported in its place), 3 triple fault, 124 timeout.
  With --json, an error still prints a JSON document: {error: {kind, message}, exit}.`;

export function exitStatus(r: BootReport, strict: boolean): number {
  if (bootSucceeded(r, strict)) return 0;
  if (r.exit.reason === 'timeout') return 124;
  // An emulator error, or a guest that could not be loaded or failed inside the emulator.
  if (r.exit.reason === 'error' || r.guests.some((g) => g.exit?.reason === 'error')) return 2;
  if (r.exit.reason === 'triple-fault') return 3;
  return 1;
}

export async function bootCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      ...MACHINE_OPTION_SPEC,
      strict: { type: 'boolean' },
      monitor: { type: 'string' },
      paused: { type: 'boolean' },
      gdb: { type: 'string' },
      'gdb-vm': { type: 'string' },
      'gdb-arch': { type: 'string' },
      guest: { type: 'string', multiple: true },
      'guest-mem': { type: 'string' },
      'guest-vcpus': { type: 'string' },
      'idle-policy': { type: 'string' },
      'guest-cmdline': { type: 'string' },
      'guest-initrd': { type: 'string' },
      registry: { type: 'string' },
      junit: { type: 'string' },
      'snapshot-on-exit': { type: 'string' },
      'snapshot-unless-status': { type: 'string' },
      rtc: { type: 'string' },
      incoming: { type: 'string' },
      populate: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) {
    console.log(BOOT_HELP);
    return 0;
  }
  const o = machineOptions(values);
  const guestMem = parseMemSize(values['guest-mem'] ?? '64M', '--guest-mem', MAX_GUEST_RAM);
  const guestVcpus = parseCount(values['guest-vcpus'], '--guest-vcpus', 1);
  const idlePolicy = idlePolicyOption(values['idle-policy']);
  const guestBoot = { ...(values['guest-cmdline'] !== undefined ? { cmdline: values['guest-cmdline'] } : {}), ...(values['guest-initrd'] !== undefined ? { initrd: values['guest-initrd'] } : {}) };
  const guests: BootGuest[] = (values.guest ?? []).map((path) => ({ path, memBytes: guestMem, vcpus: guestVcpus, ...guestBoot }));
  const incoming = parseBootIncoming(values.incoming, values.populate, guests.length);
  // With guests (or one to come), the machine needs their RAM on top of what the firmware and OS use.
  const memBytes = machineMemoryFor(incoming ? [{ path: '(incoming)', memBytes: guestMem, vcpus: guestVcpus }] : guests, values.mem !== undefined ? o.memBytes : undefined);
  if (memBytes > MAX_MACHINE_RAM) throw new UsageError(`${guests.length} guests of ${values['guest-mem'] ?? '64M'} need ${memBytes >> 20} MiB of machine RAM, more than the ${MAX_MACHINE_RAM >> 20} MiB one machine can have`);
  // A report that cannot be written is found before the boot, not after it.
  if (values.junit !== undefined) checkJunitPath(values.junit);
  const { out, err } = cliOutput();
  if (values.paused && values.monitor === undefined && values.gdb === undefined) throw new UsageError('--paused needs --monitor or --gdb (something has to resume the machine)');
  if (values['gdb-vm'] !== undefined && values.gdb === undefined) throw new UsageError('--gdb-vm needs --gdb');
  const gdb = values.gdb !== undefined ? gdbWhenReady({ address: parseGdbAddress(values.gdb), vm: values['gdb-vm'] ?? null, paused: values.paused === true, arch: parseGdbArch(values['gdb-arch']) }) : null;
  // A gdb holding a triple-faulted machine needs its engines after boot() returns.
  let releaseMachine = (): void => {};
  let releaseHypervisor = (): void => {};
  await ensureImages(o.json);
  const live = !o.json;
  const monitor = values.monitor !== undefined ? monitorWhenReady(values.monitor) : null;
  if (values.monitor !== undefined) await claimSocketPath(values.monitor);
  // The debugger (request schemas, disassembler) loads only for a monitor: plain boots start faster.
  const { DebugSession } = monitor ? await import('../../machine/debug/session.js') : { DebugSession: null };
  // Behaviour profiles over the monitor: the security service starts at the handoff, before the guests run.
  const security = monitor ? await bootSecurity() : null;
  // The monitor's views follow the boot: containers and guests appear after the handoff.
  let monitorHooks: BootHooks | null = null;
  const attachMonitor = (m: PcMachine): void => {
    monitorHooks = bootHooks(m);
    if (!DebugSession) throw new Error('attachMonitor without a monitor');
    const session = new DebugSession(m, { label: `firmware boot, ${memBytes >> 20} MiB, ${o.cpus} CPU${o.cpus > 1 ? 's' : ''}`, hooks: monitorHooks.hooks, ...(security ? { security: security.commands } : {}) });
    if (values.paused) session.debugger.pause();
    monitor?.attach(session);
    gdb?.onMachine(m, session.debugger);
  };
  const onMachine = (m: PcMachine): void => {
    if (gdb) releaseMachine = deferClose(m);
    if (monitor) attachMonitor(m);
    else gdb?.onMachine(m);
  };
  const onHandoff = (h: Handoff, hv: Hypervisor | null): void => {
    if (hv) hv.idlePolicy = idlePolicy;
    if (hv && incoming) {
      const guestOut = guestConsole();
      void waitForIncomingVm(hv, incoming, {
        onListening: (port) => err.write(`firmament: waiting for a migration on tcp:${incoming.at.host}:${port}\n`),
        onVm: (name) => err.write(`firmament: VM '${name}' migrated in\n`),
        onSerial: (name, text) => (live ? guestOut(name, text) : undefined),
      });
    }
    security?.onHandoff(hv);
    monitorHooks?.onHandoff(h, hv);
    if (gdb && hv) releaseHypervisor = deferClose(hv);
    gdb?.onHypervisor(hv);
  };
  const snapshotFile = values['snapshot-on-exit'];
  const snapshotUnless = snapshotSkipStatus(values['snapshot-unless-status']);
  let snapshot: SnapshotOutcome | undefined;
  const saveOnExit = (m: PcMachine, r: BootReport, hv: Hypervisor | null): void => {
    if (snapshotFile === undefined || exitStatus(r, values.strict === true) === snapshotUnless) return;
    // After the handoff the machine belongs to the hypervisor: what is worth keeping is its VMs.
    const vms = hv && hv.vms.length > 0 ? () => hv.vms.map((vm) => hv.snapshotVm(vm)) : undefined;
    snapshot = writeMachineSnapshot(snapshotFile, m, { command: 'boot', memBytes, cpus: o.cpus, faults: o.faults.map((f) => f.text), seed: o.seed, guests: guests.map((g) => ({ ...g, path: resolve(g.path) })), handedOff: r.handoff !== null }, vms);
  };
  const report = await boot(
    {
      memBytes,
      cpus: o.cpus,
      faults: o.faults,
      seed: o.seed,
      pace: o.pace,
      timerSlackMs: o.timerSlackMs,
      rtcEpochSeconds: rtcOption(values.rtc),
      guests,
      ...(incoming ? { waitForVms: true } : {}),
      ...(values.registry !== undefined ? { containers: { kind: 'registry' as const, url: values.registry } } : {}),
      ...(o.timeoutMs !== undefined ? { timeoutMs: o.timeoutMs } : {}),
    },
    {
      ...(live
        ? {
            // COM1 is bytes: 0x80 and above go out as themselves, not re-encoded as UTF-8.
            onSerial: (t: string) => out.writeBytes(t),
            onPostCode: (p: PostCodeRecord) => err.write(`\x1b[36m[post ${p.hex} ${p.name}]\x1b[0m${p.severity !== 'progress' ? ` \x1b[31m${p.severity}\x1b[0m` : ''}\n`),
            onGuestSerial: guestConsole(),
          }
        : {}),
      ...(monitor || gdb ? { onMachine } : {}),
      onHandoff,
      onExit: saveOnExit,
    },
  );
  await gdb?.close();
  releaseHypervisor();
  releaseMachine();
  await monitor?.close();
  security?.close();
  if (values.junit !== undefined) writeBootJunit(values.junit, report);
  if (o.json) {
    out.write(toJson(snapshot ? { ...report, snapshot } : report) + '\n');
  } else {
    if (snapshot) process.stderr.write('error' in snapshot ? `snapshot: ${snapshot.error}\n` : `snapshot: ${snapshot.file} (${snapshot.bytes} bytes)\n`);
    const stageText = report.stages.map((s) => `${s.name} ${s.startMs}-${s.endMs ?? '?'}ms`).join(', ');
    err.write(`\nexit: ${report.exit.reason} (code ${report.exit.code})${report.exit.detail ? `: ${report.exit.detail}` : ''}\nstages: ${stageText}\n`);
    if (report.postErrors.length) err.write(`POST errors: ${report.postErrors.map((p) => `${p.hex} ${p.name}`).join(', ')}\n`);
    if (report.containers.length) err.write(`containers: ${report.containers.map((c) => `${c.name} ${c.status}`).join(', ')}\n`);
    for (const g of report.guests) err.write(`guest ${g.name}: ${g.exit?.reason ?? 'running'} (code ${g.exit?.code ?? '-'}), exits ${Object.entries(g.exits).filter(([, n]) => n > 0).map(([k, n]) => `${k}=${n}`).join(' ')}\n`);
  }
  return exitStatus(report, values.strict === true);
}

/** Guest console lines on stderr, prefixed with the guest's name (COM1 of the machine stays on stdout). */
function guestConsole(): (guest: string, text: string) => void {
  const partial = new Map<string, string>();
  return (guest, text) => {
    const buf = (partial.get(guest) ?? '') + text;
    const lines = buf.split('\n');
    partial.set(guest, lines.pop()!);
    for (const l of lines) cliOutput().err.writeBytes(`\x1b[33m[${guest}]\x1b[0m ${l.replace(/\r$/, '')}\n`);
  };
}
