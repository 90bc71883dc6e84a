/**
 * The destination side of a live migration (docs/migration.md): listen, take
 * one incoming VM, and start it only after its memory digest checks out and
 * the source has committed (GO).
 *
 *   LISTEN → HELLO (RAM check: ACCEPT or REFUSE) → PAGES/ROUND… → STATE → END
 *   (digest) → build the VM → READY → GO → scheduled → RUNNING
 *
 * `prepopulate`: the VM exists from HELLO on; every received page is written
 * into a frame of its own and EPT-mapped as it arrives, the rest of RAM is
 * mapped before resume, and the hot pages' guest translations are walked from
 * the transferred CR3. `lazy`: received pages are kept aside and each is mapped
 * on the guest's first touch (an EPT violation), as `run --restore --populate lazy`.
 * Any refusal frees whatever was allocated.
 */
import { createServer, type Server, type Socket } from 'node:net';
import type { Hypervisor } from '../../hypervisor/hypervisor.js';
import type { Vm } from '../../hypervisor/vm.js';
import { decodeSnapshot } from '../../machine/snapshot/codec.js';
import { walk } from '../../machine/cpu/x86/paging.js';
import type { StateRecord } from '../../machine/state.js';
import { epochMs, MigrationChannel } from './channel.js';
import { MemoryDigest } from './memory-digest.js';
import { decodeJson, decodePages, encodeJson, FrameType, MigrationStreamError, PAGE_SIZE, type Frame } from './stream.js';

export type IncomingPopulate = 'lazy' | 'prepopulate';

export interface IncomingOptions {
  populate?: IncomingPopulate;
  /** How long to wait for the source's next frame. */
  frameTimeoutMs?: number;
}

export interface IncomingReport {
  vm: string;
  populate: IncomingPopulate;
  rounds: number;
  pagesReceived: number;
  zeroPagesReceived: number;
  bytesReceived: number;
  /** From END received to the VM scheduled. */
  downtimeMs: number;
  /** Hot guest-virtual pages whose translation was walked (prepopulate). */
  hotPagesWalked: number;
  hotPagesTranslated: number;
  digest: string;
}

export interface Incoming {
  /** The port listened on (useful with port 0). */
  port: number;
  /** The VM, scheduled and running, with the receive report; rejects on refusal (everything freed). */
  result: Promise<{ vm: Vm; report: IncomingReport }>;
  close(): void;
}

interface Hello {
  name: string;
  vcpus: number;
  memBytes: number;
  pcpus: number;
}

/** Listens at host:port for one migration into `hv`. */
export async function listenIncoming(hv: Hypervisor, at: { host: string; port: number }, opts: IncomingOptions = {}): Promise<Incoming> {
  const server: Server = createServer();
  let taken = false;
  const result = new Promise<{ vm: Vm; report: IncomingReport }>((resolve, reject) => {
    server.on('connection', (socket: Socket) => {
      if (taken) {
        socket.destroy();
        return;
      }
      taken = true;
      server.close();
      receive(hv, socket, opts).then(resolve, reject);
    });
    server.on('error', reject);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(at.port, at.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const addr = server.address();
  return { port: typeof addr === 'object' && addr ? addr.port : at.port, result, close: () => server.close() };
}

/** Host RAM a VM of `memBytes` needs here: its frames plus EPT tables (a PT per 2 MiB, a PD per GiB) and slack. */
function framesNeeded(memBytes: number): number {
  return memBytes / PAGE_SIZE + Math.ceil(memBytes / (2 * 1024 * 1024)) + 16;
}

async function receive(hv: Hypervisor, socket: Socket, opts: IncomingOptions): Promise<{ vm: Vm; report: IncomingReport }> {
  const populate = opts.populate ?? 'prepopulate';
  const ch = new MigrationChannel(socket, 'source→destination');
  const timeout = opts.frameTimeoutMs ?? 60_000;
  let vm: Vm | null = null;
  let scheduled = false;
  const lazyPages = new Map<number, Uint8Array>();
  const digest = new MemoryDigest();
  let rounds = 0;
  let pagesReceived = 0;
  let zeroPagesReceived = 0;
  let rehearsalMs = -1;
  // When each switch-over frame came and went (wall clock, comparable with the source's on one host): the source splits its downtime into legs.
  const at: Record<string, number> = {};
  try {
    const helloFrame = await ch.expect(FrameType.HELLO, timeout);
    const hello = decodeJson<Hello>(helloFrame, { name: 'string', vcpus: 'number', memBytes: 'number', pcpus: 'number' });
    if (!Number.isSafeInteger(hello.memBytes) || hello.memBytes < 2 * 1024 * 1024 || hello.memBytes % PAGE_SIZE !== 0) throw new MigrationStreamError('frame 0 (HELLO)', helloFrame.offset, 'memBytes', `${hello.memBytes} is not a guest RAM size`);
    if (!Number.isInteger(hello.vcpus) || hello.vcpus < 1 || hello.vcpus > 64) throw new MigrationStreamError('frame 0 (HELLO)', helloFrame.offset, 'vcpus', `${hello.vcpus} is not 1..64`);
    const free = hv.host.allocator.freeFrames;
    const need = framesNeeded(hello.memBytes);
    if (free < need) throw new Error(`not enough RAM for VM '${hello.name}': it needs ${((need * PAGE_SIZE) / 2 ** 20).toFixed(1)} MiB (${hello.memBytes >> 20} MiB guest RAM + EPT tables), this machine has ${((free * PAGE_SIZE) / 2 ** 20).toFixed(1)} MiB free`);
    const maxPfn = hello.memBytes / PAGE_SIZE;
    if (populate === 'prepopulate') vm = hv.newVm({ name: hello.name, vcpus: hello.vcpus, memBytes: hello.memBytes, memory: { populate: 'lazy' } });
    await ch.send(FrameType.ACCEPT, encodeJson({ populate, pcpus: hv.machine.hostCpus.length, rehearse: true }));

    let state: StateRecord | null = null;
    let hot: number[] = [];
    for (;;) {
      const f: Frame = await ch.next(timeout);
      if (f.type === FrameType.PAGES) {
        for (const p of decodePages(f, maxPfn).pages) {
          digest.set(p.pfn, p.bytes);
          const gpa = p.pfn * PAGE_SIZE;
          if (p.bytes) pagesReceived++;
          else zeroPagesReceived++;
          if (vm) {
            if (p.bytes) vm.vmMemory.write(gpa, p.bytes);
            else if (vm.vmMemory.ept.lookup(gpa)) vm.vmMemory.write(gpa, new Uint8Array(PAGE_SIZE));
          } else if (p.bytes) lazyPages.set(gpa, p.bytes.slice());
          else lazyPages.delete(gpa);
        }
      } else if (f.type === FrameType.ROUND) {
        rounds = decodeJson<{ round: number }>(f, { round: 'number' }).round;
        // After the full first pass, the rest of RAM (zero on both sides) is mapped now, not in the downtime.
        if (rounds === 1 && vm) vm.vmMemory.prepopulate(vm.vmMemory.ranges);
      } else if (f.type === FrameType.REHEARSE) {
        // The VM's state from round 1, while it still runs at the source: load it once now, so the real STATE
        // (inside the downtime) runs decode, load and the page-table walk warm. A record that does not load refuses
        // the migration now, before any downtime.
        const t = performance.now();
        const r = decodeStateFrame(f, 'REHEARSE');
        if (vm) {
          vm.loadInPlace(r.state);
          prefillWorkingSet(vm, r.hot);
          // Inert until the real STATE: its timers would otherwise fire on this machine's timeline and wake it for nothing.
          vm.clock.pause();
        } else hv.restoreVm(r.state, { ranges: [], populate: 'lazy' }, { start: false }).close();
        rehearsalMs = Math.round((performance.now() - t) * 100) / 100;
      } else if (f.type === FrameType.STATE) {
        at.stateRx = epochMs();
        ({ state, hot } = decodeStateFrame(f, 'STATE'));
      } else if (f.type === FrameType.END) {
        at.endRx = epochMs();
        const end = decodeJson<{ digest: string; nonZeroPages: number }>(f, { digest: 'string', nonZeroPages: 'number' });
        if (!state) throw new MigrationStreamError(`frame ${f.seq} (END)`, f.offset, 'state', 'END before any STATE frame');
        const t0 = performance.now();
        const cpu0 = process.cpuUsage();
        if (end.digest !== digest.hex() || end.nonZeroPages !== digest.nonZeroPages) throw new MigrationStreamError(`frame ${f.seq} (END)`, f.offset, 'digest', `guest memory digest ${digest.hex().slice(0, 16)}… (${digest.nonZeroPages} non-zero pages) does not match the source's ${end.digest.slice(0, 16)}… (${end.nonZeroPages})`);
        let walked = { walked: 0, translated: 0 };
        const phases: Record<string, number> = {};
        const lap = (name: string, since: number): number => {
          const now = performance.now();
          phases[name] = Math.round((now - since) * 100) / 100;
          return now;
        };
        let t = t0;
        if (vm) {
          vm.loadInPlace(state);
          t = lap('loadMs', t);
          // Done after round 1 already (every later page was mapped when written); a stream without rounds maps it here.
          if (rounds === 0) vm.vmMemory.prepopulate(vm.vmMemory.ranges);
          t = lap('prepopulateMs', t);
          walked = prefillWorkingSet(vm, hot);
          t = lap('prefillMs', t);
          vm.vmMemory.lazyFaults = 0;
          vm.vmMemory.eptViolations = 0;
        } else {
          vm = hv.restoreVm(state, { ranges: [...lazyPages].map(([gpa, bytes]) => ({ gpa, bytes })), populate: 'lazy' }, { start: false });
          t = lap('loadMs', t);
        }
        if (vm.vcpuCount !== (state['vcpus'] as number)) throw new Error('vCPU count changed');
        // CPU time of the build as well as wall time: on a loaded host the wall time is mostly waiting for a core.
        const cpu = process.cpuUsage(cpu0);
        phases['buildCpuMs'] = Math.round((cpu.user + cpu.system) / 10) / 100;
        at.readySent = epochMs();
        await ch.send(FrameType.READY, encodeJson({ populate, downtimeMs: Math.round((performance.now() - t0) * 100) / 100, rehearsalMs, ...phases }));
        await ch.expect(FrameType.GO, timeout);
        at.goRx = epochMs();
        hv.addVm(vm);
        scheduled = true;
        hv.machine.kick();
        const downtimeMs = Math.round((performance.now() - t0) * 100) / 100;
        at.runningSent = epochMs();
        await ch.send(FrameType.RUNNING, encodeJson({ populate, downtimeMs, hotPagesWalked: walked.walked, hotPagesTranslated: walked.translated, at }));
        const report: IncomingReport = { vm: vm.name, populate, rounds, pagesReceived, zeroPagesReceived, bytesReceived: ch.bytesIn, downtimeMs, hotPagesWalked: walked.walked, hotPagesTranslated: walked.translated, digest: digest.hex() };
        ch.close();
        return { vm, report };
      } else if (f.type === FrameType.ABORT) {
        throw new Error(`the source aborted the migration: ${decodeJson<{ error: string }>(f, { error: 'string' }).error}`);
      } else {
        throw new MigrationStreamError(`frame ${f.seq}`, f.offset, 'type', `unexpected frame type 0x${f.type.toString(16)} from the source`);
      }
    }
  } catch (e) {
    if (vm && !scheduled) vm.close();
    else if (vm && scheduled) hv.removeVm(vm);
    lazyPages.clear();
    const msg = (e as Error).message;
    try {
      await ch.send(FrameType.REFUSE, encodeJson({ error: msg }));
      await ch.drain();
    } catch {
      // the link is gone
    }
    ch.close();
    throw new Error(`incoming migration refused: ${msg}`);
  }
}

/** A STATE or REHEARSE payload: a FMSNAP02 record of `{vm, hotPages}`. */
function decodeStateFrame(f: Frame, name: string): { state: StateRecord; hot: number[] } {
  let rec: StateRecord;
  try {
    rec = decodeSnapshot(f.payload);
  } catch (e) {
    throw new MigrationStreamError(`frame ${f.seq} (${name})`, f.offset, 'state', (e as Error).message);
  }
  const v = rec['vm'];
  if (v === null || typeof v !== 'object' || Array.isArray(v) || v instanceof Uint8Array) throw new MigrationStreamError(`frame ${f.seq} (${name})`, f.offset, 'vm', 'not a VM state record');
  const h = rec['hotPages'];
  return { state: v as StateRecord, hot: Array.isArray(h) ? h.filter((x): x is number => typeof x === 'number') : [] };
}

/**
 * Walks the guest's own page tables from each vCPU's CR3 for the pages the
 * source reported hot, plus each vCPU's code and stack page, so every table
 * and target page on those paths is mapped before the first instruction.
 * The hot set is guest-physical (the dirty log's); identity-mapped guests
 * (all of ours) reach them at the same virtual address.
 */
function prefillWorkingSet(vm: Vm, hotGpas: readonly number[]): { walked: number; translated: number } {
  let walked = 0;
  let translated = 0;
  for (const v of vm.vcpus) {
    if (v.cpu.state !== 'running' && v.cpu.state !== 'halted') continue;
    const ctl = v.cpu.readControl();
    if ((ctl.cr0 & 0x8000_0000n) === 0n) continue;
    const pages = new Set<bigint>([v.cpu.readRip() & ~0xfffn, v.cpu.readRsp() & ~0xfffn, ...hotGpas.map((g) => BigInt(g))]);
    for (const gva of pages) {
      walked++;
      try {
        const r = walk(vm.vmMemory.walkMemory, ctl, gva, { access: 'read', user: false, setAccessedDirty: false, recordSteps: false });
        if (r.ok) {
          translated++;
          vm.vmMemory.prepopulate([{ gpa: Number(r.paddr & ~0xfffn), length: PAGE_SIZE }]);
        }
      } catch {
        // a table outside guest RAM: the guest would fault there too
      }
    }
  }
  return { walked, translated };
}
