/**
 * The monitor control socket: newline-delimited JSON requests and responses
 * plus an unprompted event stream, over a Unix socket (docs/monitor.md).
 * Each connection is a client of the same DebugSession.
 */
import { createServer, createConnection, type Server, type Socket } from 'node:net';
import { existsSync, unlinkSync } from 'node:fs';
import type { DebugSession } from '../../machine/debug/session.js';
import type { MonitorEvent, MonitorResponse } from '../../machine/debug/protocol.js';
import { encodeLine, lineReader, MAX_LINE_BYTES } from '../../machine/debug/ndjson.js';
import { UsageError } from './args.js';

/** A client that stops reading gets events dropped beyond this much queued output (responses are never dropped). */
const MAX_QUEUED_BYTES = 4 * 1024 * 1024;
/** A client that sends requests but never reads the answers is disconnected beyond this much queued output. */
const MAX_UNREAD_BYTES = 64 * 1024 * 1024;

export interface MonitorServer {
  readonly path: string;
  /** Connected clients right now. */
  clients(): number;
  close(): Promise<void>;
}

/** A socket file nobody listens on (a crashed earlier run) is removed; a live one is an error. */
export async function claimSocketPath(path: string): Promise<void> {
  if (!existsSync(path)) return;
  const alive = await new Promise<boolean>((resolve) => {
    const probe = createConnection(path);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
  if (alive) throw new UsageError(`--monitor ${path}: another monitor is already listening there`);
  unlinkSync(path);
}

export async function startMonitorServer(session: DebugSession, path: string): Promise<MonitorServer> {
  await claimSocketPath(path);
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    const send = (value: unknown, droppable: boolean): void => {
      if (socket.destroyed) return;
      if (droppable && socket.writableLength > MAX_QUEUED_BYTES) return;
      if (socket.writableLength > MAX_UNREAD_BYTES) {
        socket.destroy();
        return;
      }
      socket.write(encodeLine(value));
    };
    const unsubscribe = session.onEvent((ev: MonitorEvent) => send(ev, true));
    socket.on(
      'data',
      lineReader(
        async (line) => {
          let value: unknown;
          try {
            value = JSON.parse(line);
          } catch (e) {
            send({ ok: false, error: `bad JSON: ${(e as Error).message}` }, false);
            return;
          }
          // handle() validates any JSON value and never throws; the guard is for a bug of ours,
          // which must cost this client its answer, not the machine its process.
          let response: MonitorResponse;
          try {
            response = await session.handleAsync(value);
          } catch (e) {
            response = { ok: false, error: `internal error: ${(e as Error).message}` };
          }
          send(response, false);
        },
        { maxLineBytes: MAX_LINE_BYTES, onOverflow: () => send({ ok: false, error: `request line longer than ${MAX_LINE_BYTES} bytes: discarded up to its newline` }, false) },
      ),
    );
    const gone = (): void => {
      unsubscribe();
      sockets.delete(socket);
    };
    socket.on('close', gone);
    socket.on('error', gone);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => {
      server.off('error', reject);
      resolve();
    });
  });
  // Should the process end without close() (a crash, process.exit), the socket file goes with it.
  const removeSocketFile = (): void => {
    try {
      unlinkSync(path);
    } catch {
      // already gone
    }
  };
  process.once('exit', removeSocketFile);
  return {
    path,
    clients: () => sockets.size,
    close: () =>
      new Promise<void>((resolve) => {
        process.off('exit', removeSocketFile);
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/**
 * For `boot --monitor` and `run --monitor`: the server comes up when the
 * machine exists and goes down when the command ends. Start errors are
 * reported on stderr; the boot itself goes on.
 */
export function monitorWhenReady(path: string): { attach(session: DebugSession): void; close(): Promise<void> } {
  let server: Promise<MonitorServer | null> = Promise.resolve(null);
  let attached: DebugSession | null = null;
  return {
    attach(session) {
      attached = session;
      server = startMonitorServer(session, path).catch((e: Error) => {
        process.stderr.write(`firmament: monitor: ${e.message}\n`);
        return null;
      });
    },
    async close() {
      await (await server)?.close();
      attached?.close();
    },
  };
}
