/**
 * Two machines in one process, a source running a guest and a destination
 * waiting with listenIncoming, joined over loopback TCP (optionally through a
 * fault-injecting proxy): what the transcript and fault tests drive.
 */
import { expect } from 'vitest';
import { createServer, createConnection, type Server, type Socket } from 'node:net';
import { createGuestMachine, guestHost, type GuestMachine } from '../../vmm/run-guests.js';
import type { GuestFileSpec } from '../../hypervisor/guest-files.js';
import { listenIncoming, type IncomingPopulate, type IncomingReport } from '../../vmm/migration/destination.js';
import { migrateVm, type MigrateOptions, type MigrationReport } from '../../vmm/migration/source.js';
import type { Vm } from '../../hypervisor/vm.js';
import type { MachineExit } from '../../machine/platform/pc.js';
import { measureAfterResume, type AfterResume } from '../../tools/cli/migrate.js';
import { encodePreamble } from '../../vmm/migration/stream.js';

const MiB = 1024 * 1024;

export interface Source {
  g: GuestMachine;
  vm: Vm;
  printed: string[];
  running: Promise<MachineExit>;
}

/** Starts a guest; `pauseAtBytes`: the machine pauses at the end of the round in which COM1 reached that many bytes. */
export function startSource(spec: GuestFileSpec, opts: { pcpus?: number; pace?: 'virtual' | 'realtime'; pauseAtBytes?: number } = {}): Source {
  const g = createGuestMachine([spec], { pcpus: opts.pcpus ?? 1, pace: opts.pace ?? 'virtual' });
  const vm = g.vms[0]!;
  const printed: string[] = [];
  let paused = false;
  vm.onSerial = (t) => {
    printed.push(t);
    if (!paused && opts.pauseAtBytes !== undefined && vm.serial.length >= opts.pauseAtBytes) {
      paused = true;
      g.machine.pauseAfterRound();
    }
  };
  // 0: paused before the first round (a guest that prints everything in one round is migrated before it starts).
  if (opts.pauseAtBytes === 0) {
    paused = true;
    g.machine.pauseAfterRound();
  }
  return { g, vm, printed, running: g.machine.run({ timeoutMs: 300_000 }) };
}

export async function waitFor(cond: () => boolean, what: string, ms = 120_000): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

export interface Destination {
  port: number;
  result: Promise<{ vm: Vm; report: IncomingReport; printed: string[]; exit: MachineExit; afterResume: AfterResume | null }>;
  close(): void;
  freeFrames(): number;
  initialFreeFrames: number;
  /** Frame owners other than the hypervisor's own (its MSR map and shared vCPU control areas stay once made). */
  vmOwners(): string[];
}

/** A machine waiting for one VM; once it arrives it runs to the VM's exit. */
export async function startDestination(opts: { capacity?: number; populate?: IncomingPopulate; pcpus?: number; pace?: 'virtual' | 'realtime' } = {}): Promise<Destination> {
  const { machine, hypervisor } = guestHost(opts.capacity ?? 64 * MiB, { pcpus: opts.pcpus ?? 1, pace: opts.pace ?? 'virtual' });
  const initialFreeFrames = hypervisor.host.allocator.freeFrames;
  const initialOwners = new Set(Object.keys(hypervisor.host.allocator.usage().byOwner));
  const inc = await listenIncoming(hypervisor, { host: '127.0.0.1', port: 0 }, opts.populate ? { populate: opts.populate } : {});
  let closed = false;
  const close = (): void => {
    if (closed) return;
    closed = true;
    inc.close();
    hypervisor.close();
    machine.close();
  };
  const result = inc.result.then(async ({ vm, report }) => {
    const printed: string[] = [];
    vm.onSerial = (t) => printed.push(t);
    let afterResume: AfterResume | null = null;
    void measureAfterResume(hypervisor, vm).then((a) => (afterResume = a));
    hypervisor.onAllStopped = () => {
      const e = vm.exit!;
      machine.finish({ reason: e.reason === 'stopped' ? 'stopped' : e.reason, code: e.code, atNs: e.atNs ?? machine.now() } as MachineExit);
    };
    const exit = await machine.run({ timeoutMs: 300_000 });
    return { vm, report, printed, exit, afterResume };
  });
  return { port: inc.port, result, close, freeFrames: () => hypervisor.host.allocator.freeFrames, initialFreeFrames, vmOwners: () => Object.keys(hypervisor.host.allocator.usage().byOwner).filter((o) => !o.startsWith('hv:') && !initialOwners.has(o)) };
}

export type Fault = { kind: 'cut-after-bytes'; bytes: number } | { kind: 'corrupt-at'; offset: number } | { kind: 'truncate-at'; bytes: number } | { kind: 'preamble-version'; version: number } | { kind: 'none' };

/**
 * A TCP proxy between source and destination that injects one fault into
 * the source→destination direction: cut both connections after N bytes,
 * flip a byte at an offset, or deliver N bytes and then close cleanly.
 */
export async function startProxy(targetPort: number, fault: Fault): Promise<{ port: number; forwarded: () => number; close: () => void }> {
  let forwarded = 0;
  const sockets: Socket[] = [];
  const server: Server = createServer((client) => {
    const upstream = createConnection({ host: '127.0.0.1', port: targetPort });
    sockets.push(client, upstream);
    upstream.on('data', (d) => client.write(d));
    upstream.on('error', () => client.destroy());
    upstream.on('close', () => client.destroy());
    client.on('error', () => upstream.destroy());
    client.on('close', () => upstream.destroy());
    let done = false;
    client.on('data', (d: Buffer) => {
      if (done) return;
      const start = forwarded;
      forwarded += d.length;
      if (fault.kind === 'preamble-version' && start === 0 && d.length >= 16) {
        // A source of another build: a valid preamble (CRC and all) that announces another version.
        const copy = Buffer.from(d);
        copy.set(encodePreamble(fault.version), 0);
        upstream.write(copy);
        return;
      }
      if (fault.kind === 'corrupt-at' && fault.offset >= start && fault.offset < forwarded) {
        const copy = Buffer.from(d);
        copy[fault.offset - start]! ^= 0x40;
        upstream.write(copy);
        return;
      }
      if ((fault.kind === 'cut-after-bytes' || fault.kind === 'truncate-at') && forwarded >= fault.bytes) {
        done = true;
        upstream.write(d.subarray(0, fault.bytes - start));
        if (fault.kind === 'cut-after-bytes') {
          upstream.destroy();
          client.destroy();
        } else upstream.end();
        return;
      }
      upstream.write(d);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const addr = server.address();
  return {
    port: typeof addr === 'object' && addr ? addr.port : 0,
    forwarded: () => forwarded,
    close: () => {
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
}

export async function migrateTo(src: Source, port: number, opts: MigrateOptions = {}): Promise<MigrationReport> {
  return migrateVm(src.g.hypervisor, src.vm, { host: '127.0.0.1', port }, opts);
}

export function closeSource(src: Source): void {
  src.g.hypervisor.close();
  src.g.machine.close();
}

/** Ends a source that is still running (or paused) and frees it. */
export async function endSource(src: Source): Promise<void> {
  src.g.machine.stop();
  if (src.g.machine.paused) src.g.machine.resume();
  await src.running;
  closeSource(src);
}

export interface ReferenceRun {
  serial: string;
  code: number;
  atNs: number;
}

/** The guest run to its end without migrating: what every migrated run must equal. */
export async function referenceRun(spec: GuestFileSpec): Promise<ReferenceRun> {
  const ref = startSource(spec);
  const exit = await ref.running;
  const run = { serial: ref.vm.serial, code: exit.code, atNs: exit.atNs ?? -1 };
  closeSource(ref);
  return run;
}

/** A migrated run's joined console, status and end time equal the reference run's. */
export function expectSameRun(printedBefore: readonly string[], done: { printed: readonly string[]; exit: { code: number; atNs?: number | undefined } }, ref: ReferenceRun): void {
  expect(printedBefore.join('') + done.printed.join('')).toBe(ref.serial);
  expect(done.exit.code).toBe(ref.code);
  expect(done.exit.atNs).toBe(ref.atNs);
}
