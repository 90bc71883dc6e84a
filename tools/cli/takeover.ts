/**
 * `firmament takeover` (hidden): the new process of a live update, started
 * by the old one (vmm/live-update/update.ts) with the RAM memfd as fd 3, the
 * update channel as fd 4 and the status pipe to the launcher as fd 5.
 * It builds its engines and maps the RAM while the guests still run in the
 * old process, then adopts the state record, resumes the VMs, takes the
 * monitor socket over and goes on being the user's `firmament run`: COM1 to
 * stdout (inherited), --json at the end, the exit status to the launcher.
 */
import { writeSync } from 'node:fs';
import { Socket } from 'node:net';
import { parseArgs } from 'node:util';
import { SharedRam } from '../../machine/memory/shared-ram.js';
import { decodeSnapshot } from '../../machine/snapshot/codec.js';
import { DebugSession, type SessionOptions } from '../../machine/debug/session.js';
import { HC_VERSION } from '../../hypervisor/hypercalls.js';
import type { Hypervisor } from '../../hypervisor/hypervisor.js';
import type { Vm } from '../../hypervisor/vm.js';
import type { PcMachine } from '../../machine/platform/pc.js';
import { finishWithFirstVm, guestHostMachine } from '../../vmm/run-guests.js';
import { adoptOver } from '../../vmm/live-update/adopt-over.js';
import { adoptLiveState, LIVE_UPDATE_VERSION, parseHostShape, type HostShape } from '../../vmm/live-update/state.js';
import { stateRecord, type StateRecord } from '../../machine/state.js';
import { cpuMs, FD_CHANNEL, FD_RAM, FD_STATUS, LiveUpdateHost } from '../../vmm/live-update/update.js';
import { epochMs, rssAnonKiB, UpdateChannel, type SuccessorSettings, type UpdateMessage } from '../../vmm/live-update/wire.js';
import { toJson } from './args.js';
import { cliOutput } from './stdout.js';
import { claimSocketPath, monitorWhenReady } from './monitor-server.js';
import { guestHooks } from './guest-hooks.js';
import { vmSnapshotCommands } from './vm-snapshots.js';

/** Fault injection for the rollback tests: crash (SIGKILL itself) or hang once it has the state. */
const FAULT = process.env['FIRMAMENT_TAKEOVER_FAULT'];
const REHEARSALS = 4;

/** The monitor of a `run` whose RAM is shared: inspection, snapshots and `update`. */
export function liveMonitor(path: string, m: PcMachine, hv: Hypervisor, host: LiveUpdateHost, settings: { label: string; storeDir: string; services?: Pick<SessionOptions, 'backup' | 'migrate' | 'security' | 'clones'> }): { close(): Promise<void>; ready: Promise<void> } {
  const monitor = monitorWhenReady(path);
  const ready = claimSocketPath(path).then(() => {
    const session = new DebugSession(m, { label: settings.label, hooks: guestHooks(m, hv), snapshots: vmSnapshotCommands(hv, settings.storeDir), ...settings.services, update: (args) => host.update(args) });
    monitor.attach(session);
  });
  host.releaseMonitor = () => monitor.close();
  return { close: () => monitor.close(), ready };
}

export async function takeoverCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { 'host-bytes': { type: 'string' }, pcpus: { type: 'string' }, pace: { type: 'string' }, 'timer-slack': { type: 'string' } } });
  const shape = parseHostShape({ hostBytes: Number(values['host-bytes']), pcpus: Number(values.pcpus), pace: values.pace ?? '', timerSlackMs: values['timer-slack'] !== undefined ? Number(values['timer-slack']) : -1, map: [] });
  const channel = new UpdateChannel(new Socket({ fd: FD_CHANNEL, readable: true, writable: true }));
  const refuse = (reason: string): number => {
    channel.send({ type: 'refused', reason });
    channel.close();
    return 3;
  };

  // 1. Preparation, while the guests still run in the old process: engines, the RAM mapping.
  let ram: SharedRam;
  let machine: PcMachine;
  try {
    ram = SharedRam.adopt(FD_RAM, shape.hostBytes);
    machine = guestHostMachine(shape, ram.bytes);
  } catch (e) {
    return refuse(`preparation failed: ${(e as Error).message}`);
  }
  channel.send({ type: 'ready', pid: process.pid, prepareMs: performance.now(), hcVersion: HC_VERSION, liveUpdateVersion: LIVE_UPDATE_VERSION, inode: ram.info().inode });

  // 2. The state record (the old process has paused its VMs), after a rehearsal on a record taken
  //    while they still ran: adopted (adoption writes no RAM), so the real one runs warm.
  let got: { msg: UpdateMessage; payload: Uint8Array };
  // The last rehearsal's adoption is kept: if nothing about where things live changes before the pause, the real
  // record is loaded into it in place (vmm/live-update/adopt-over.ts) instead of building every VM again.
  let kept: { rec: StateRecord; adopted: { hypervisor: Hypervisor; vms: Vm[] } } | null = null;
  const dropKept = (): void => {
    for (const vm of kept?.adopted.vms ?? []) vm.close();
    kept = null;
  };
  for (;;) {
    try {
      got = await channel.next();
    } catch {
      return 0; // the old process went on without us
    }
    if (got.msg.type !== 'preview') break;
    const t = performance.now();
    try {
      // A few rounds: V8 compiles the adoption path only once it has run a few times.
      for (let i = 0; i < REHEARSALS; i++) {
        dropKept();
        const rec = decodeSnapshot(got.payload);
        kept = { rec, adopted: adoptLiveState(rec, machine) };
      }
      // The in-place path too (the preview loaded into its own adoption changes nothing): warm when the real record comes.
      for (let i = 0; i < REHEARSALS && kept; i++) adoptOver(kept.rec, kept.adopted, kept.rec, machine);
    } catch (e) {
      dropKept();
      machine.close();
      return refuse((e as Error).message);
    }
    channel.send({ type: 'rehearsed', ms: performance.now() - t });
  }
  if (got.msg.type !== 'state') return refuse(`expected the state record, got '${got.msg.type}'`);
  const settings: SuccessorSettings = got.msg.settings;
  if (FAULT === 'crash') process.kill(process.pid, 'SIGKILL');
  if (FAULT === 'hang') await new Promise<never>(() => {});
  const t0 = performance.now();
  const adoptCpu0 = process.cpuUsage();
  const rssBefore = rssAnonKiB();
  let hv: Hypervisor;
  let vms: Vm[];
  let fullShape: HostShape;
  let adoptedHow = '';
  try {
    const rec = decodeSnapshot(got.payload);
    fullShape = parseHostShape(stateRecord(rec, 'host', 'live-update'));
    const inPlace = kept ? adoptOver(kept.rec, kept.adopted, rec, machine) : { ok: false as const, why: 'no rehearsal' };
    if (inPlace.ok) ({ hypervisor: hv, vms } = kept!.adopted);
    else {
      dropKept();
      ({ hypervisor: hv, vms } = adoptLiveState(rec, machine));
    }
    adoptedHow = inPlace.ok ? 'in place' : `from scratch (${inPlace.why})`;
  } catch (e) {
    dropKept();
    machine.close();
    return refuse((e as Error).message);
  }
  channel.send({ type: 'adopted', adoptMs: performance.now() - t0, rssAnonBeforeKiB: rssBefore, rssAnonAfterKiB: rssAnonKiB(), how: adoptedHow, adoptCpuMs: cpuMs(process.cpuUsage(adoptCpu0)) });

  // 3. Commit from the old process, or it rolled back (then nothing here ever ran).
  try {
    const go = await channel.next();
    if (go.msg.type !== 'go') return 0;
  } catch {
    return 0;
  }
  const goReceivedAt = epochMs();
  const { out, err } = cliOutput();
  if (!settings.json && vms[0]) vms[0].onSerial = (t) => out.writeBytes(t);
  finishWithFirstVm(machine, hv, vms);
  const firstSlices = new Map<string, number>();
  const slice = hv.onSliceExit.bind(hv);
  let allSeen: () => void = () => {};
  const seen = new Promise<void>((r) => (allSeen = r));
  // The first slice of each VM ends the blackout; then the observer goes away.
  hv.onSliceExit = (cpu, exit, hostMs) => {
    const vm = vms.find((v) => v.vcpus.some((c) => c.cpu === cpu));
    if (vm && !firstSlices.has(vm.name)) firstSlices.set(vm.name, epochMs() - hostMs);
    slice(cpu, exit, hostMs);
    if (firstSlices.size >= vms.length) {
      hv.onSliceExit = slice;
      allSeen();
    }
  };
  const host = new LiveUpdateHost(machine, hv, fullShape, ram, { json: settings.json, monitor: settings.monitor, storeDir: settings.storeDir, deadline: settings.deadline, label: settings.label }, FD_STATUS, {
    wall: performance.now(),
    cpu: process.cpuUsage(),
    wallBefore: settings.wallMsBefore,
    cpuBefore: settings.cpuMsBefore,
  });
  const resumedAt = epochMs();
  machine.log('live-update', `took over from the old process: VMs resumed ${(resumedAt - goReceivedAt).toFixed(3)} ms after the commit`);
  const wall0 = performance.now();
  const cpu0 = process.cpuUsage();
  const remaining = settings.deadline !== null ? Math.max(1, settings.deadline - Date.now()) : undefined;
  const running = machine.run(remaining !== undefined ? { timeoutMs: remaining } : {});
  await Promise.race([seen, new Promise((r) => setTimeout(r, 200)), running]);
  hv.onSliceExit = slice;
  channel.send({ type: 'running', goReceivedAt, resumedAt, firstSlices: [...firstSlices].map(([vm, at]) => ({ vm, at })) });

  // 4. The monitor socket, once the old process has let it go.
  const monitor: { current: { close(): Promise<void> } | null } = { current: null };
  if (settings.monitor !== null) {
    const path = settings.monitor;
    void channel.next().then(
      () => {
        const mon = liveMonitor(path, machine, hv, host, settings);
        monitor.current = mon;
        mon.ready.catch((e: Error) => err.write(`firmament: monitor: ${e.message}\n`));
      },
      () => {},
    );
  }
  const exit = await running;
  if (host.handedOver) {
    // Handed over in turn (a chain): the monitor answers `update` and goes to the successor first.
    await host.released;
    await host.afterHandover();
    process.exit(0);
  }
  const cpu = process.cpuUsage(cpu0);
  const hostTimes = { wallMs: Math.round((settings.wallMsBefore + performance.now() - wall0) * 10) / 10, cpuMs: Math.round((settings.cpuMsBefore + cpuMs(cpu)) * 10) / 10 };
  if (settings.json) out.write(toJson({ serial: vms[0]?.serial ?? '', exit, guests: hv.guestReports(), host: hostTimes }) + '\n');
  else if (exit.reason !== 'debug-exit') err.write(`\nfirmament: ${exit.reason}${exit.detail ? `: ${exit.detail}` : ''}\n`);
  await monitor.current?.close();
  // The launcher (the process the user started) exits with this status.
  try {
    writeSync(FD_STATUS, `${exit.code}\n`);
  } catch {
    // the launcher is gone: nobody waits for the status
  }
  return exit.code;
}
