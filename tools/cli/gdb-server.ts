/**
 * `--gdb tcp::1234`: the GDB remote stub on a TCP port (machine/debug/gdb/).
 * One gdb at a time, as QEMU's stub; after a detach another may attach. The
 * server comes up when its target exists (the machine at once; a VM named
 * with --gdb-vm at the handoff) and, when the command ends, reports the
 * exit to a connected gdb before it goes down.
 */
import { createServer, type Server, type Socket } from 'node:net';
import type { PcMachine } from '../../machine/platform/pc.js';
import type { Debugger } from '../../machine/debug/debugger.js';
import type { Hypervisor } from '../../hypervisor/hypervisor.js';
import { GdbStub } from '../../machine/debug/gdb/stub.js';
import { machineTarget, vmTarget, type GdbTarget } from '../../machine/debug/gdb/target.js';
import type { GdbArch } from '../../machine/debug/gdb/registers.js';
import { UsageError } from './args.js';

export interface GdbAddress {
  host: string;
  port: number;
}

/**
 * QEMU's spellings: `tcp::1234`, `tcp:HOST:1234`, `:1234`, `1234`. An empty
 * host means loopback (QEMU listens on every interface; a debug port that
 * reads and writes all memory should not, unless asked for by name).
 */
export function parseGdbAddress(text: string): GdbAddress {
  const m = /^(?:tcp:)?(?:([^:]*):)?(\d+)$/.exec(text.trim());
  const port = m ? Number(m[2]) : NaN;
  if (!m || !Number.isInteger(port) || port < 0 || port > 65535) throw new UsageError(`--gdb ${text}: expected tcp::PORT or tcp:HOST:PORT (as QEMU's -gdb)`);
  return { host: m[1] ? m[1] : '127.0.0.1', port };
}

/** --gdb-arch: the register layout gdb expects (an i386 ELF makes gdb an i386 debugger). */
export function parseGdbArch(text: string | undefined): GdbArch {
  if (text === undefined || text === 'x86-64' || text === 'i386:x86-64') return 'x86-64';
  if (text === 'i386') return 'i386';
  throw new UsageError(`--gdb-arch ${text}: expected x86-64 (default) or i386`);
}

export interface GdbServer {
  /** The bound address (port 0 resolves to the one the system chose). */
  address(): GdbAddress | null;
  /**
   * Waits for the exit report to reach a connected gdb; if the target died of
   * a triple fault, holds its state until gdb detaches, then closes.
   */
  close(): Promise<void>;
}

export interface GdbServeOptions {
  /** Say where the stub listens (stderr in the CLI). */
  log(line: string): void;
  arch?: GdbArch;
}

export function startGdbServer(makeTarget: () => GdbTarget, addr: GdbAddress, opts: GdbServeOptions): Promise<GdbServer> {
  const target = makeTarget();
  let client: { socket: Socket; stub: GdbStub } | null = null;
  let clientGone: (() => void) | null = null;
  const server: Server = createServer((socket) => {
    if (client) {
      // One debugger at a time: QEMU refuses a second connection the same way.
      socket.end();
      return;
    }
    socket.setNoDelay(true);
    // FIRMAMENT_GDB_TRACE=1: every packet both ways on stderr (QEMU's trace_gdbstub_io_* events).
    const trace = process.env['FIRMAMENT_GDB_TRACE'] ? (dir: string, b: Buffer): void => opts.log(`gdb ${dir} ${b.toString('latin1').slice(0, 200)}`) : null;
    const stub = new GdbStub(target, {
      ...(opts.arch ? { arch: opts.arch } : {}),
      send: (b) => {
        trace?.('<-', b);
        if (!socket.destroyed) socket.write(b);
      },
      end: () => socket.end(),
      log: (l) => opts.log(l),
    });
    client = { socket, stub };
    opts.log(`gdb: client ${socket.remoteAddress}:${socket.remotePort} attached to ${target.label}`);
    socket.on('data', (chunk: Buffer) => {
      trace?.('->', chunk);
      stub.receive(chunk);
      if (stub.finished && target.exit) socket.end();
    });
    const gone = (): void => {
      if (client?.socket !== socket) return;
      stub.close();
      client = null;
      opts.log('gdb: client detached');
      clientGone?.();
    };
    socket.on('close', gone);
    socket.on('error', gone);
  });
  return new Promise((resolve, reject) => {
    server.once('error', (e: NodeJS.ErrnoException) => {
      // The target's debugger was attached for this server: let the machine run undisturbed.
      target.close();
      reject(new Error(`--gdb ${addr.host}:${addr.port}: ${e.code === 'EADDRINUSE' ? 'port already in use' : e.message}`));
    });
    server.listen(addr.port, addr.host, () => {
      const a = server.address();
      const bound = a && typeof a === 'object' ? { host: a.address, port: a.port } : null;
      opts.log(`gdb: listening on ${bound?.host}:${bound?.port} for ${target.label} (target remote ${bound?.host}:${bound?.port})`);
      resolve({
        address: () => bound,
        async close() {
          // The debugger reports the exit from a setImmediate: let it reach the socket first.
          await new Promise<void>((r) => setImmediate(r));
          const c = client;
          if (c && target.exit?.reason === 'triple-fault' && !c.stub.finished) {
            opts.log('gdb: triple fault; the state is kept for gdb until it detaches');
            await new Promise<void>((r) => (clientGone = r));
          } else if (c) {
            c.socket.end();
          }
          target.close();
          await new Promise<void>((r) => server.close(() => r()));
        },
      });
    });
  });
}

/** Where --gdb attaches: the whole machine, or one VM by name (--gdb-vm). */
export interface GdbPlan {
  address: GdbAddress;
  vm: string | null;
  paused: boolean;
  /** The VM is the machine's only one (`run`): a stop pauses the whole machine, clocks included. */
  wholeMachine?: boolean;
  arch?: GdbArch;
}

/**
 * For `boot` and `run`: starts the stub once its target exists. A VM target
 * is frozen at once when --paused (before its first instruction).
 */
export function gdbWhenReady(plan: GdbPlan): {
  onMachine(m: PcMachine, shared?: Debugger): void;
  onHypervisor(hv: Hypervisor | null): void;
  close(): Promise<void>;
} {
  let server: Promise<GdbServer | null> = Promise.resolve(null);
  const log = (l: string): void => void process.stderr.write(`${l}\n`);
  const start = (make: () => GdbTarget): void => {
    server = startGdbServer(make, plan.address, { log, ...(plan.arch ? { arch: plan.arch } : {}) }).catch((e: Error) => {
      log(`firmament: ${e.message}`);
      return null;
    });
  };
  return {
    onMachine(m, shared) {
      if (plan.vm !== null) return;
      if (plan.paused) m.pause();
      start(() => machineTarget(m, shared));
    },
    onHypervisor(hv) {
      if (plan.vm === null) return;
      const vm = hv?.vms.find((v) => v.name === plan.vm);
      if (!vm) {
        log(`firmament: --gdb-vm ${plan.vm}: no such VM (VMs: ${hv?.vms.map((v) => v.name).join(', ') || 'none'})`);
        return;
      }
      if (plan.paused) {
        if (plan.wholeMachine) hv!.machine.pause();
        else vm.frozen = true;
      }
      start(() => vmTarget(hv!.machine, vm, { wholeMachine: plan.wholeMachine === true }));
    },
    async close() {
      await (await server)?.close();
    },
  };
}

/** Keeps engines open past their owner's close() until released (a held triple fault needs them). */
export function deferClose(owner: { close(): void }): () => void {
  const real = owner.close.bind(owner);
  owner.close = () => {};
  return real;
}
