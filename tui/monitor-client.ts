/** A monitor socket client: typed requests with promises, and the event stream (docs/monitor.md). */
import { createConnection, type Socket } from 'node:net';
import type { CommandName, Commands, MonitorEvent, MonitorResponse } from '../machine/debug/protocol.js';
import { encodeLine, lineReader } from '../machine/debug/ndjson.js';

const MAX_RESPONSE_LINE_BYTES = 64 * 1024 * 1024;

type Pending = { resolve: (v: unknown) => void; reject: (e: Error) => void };

export class MonitorClient {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private readonly listeners = new Set<(ev: MonitorEvent) => void>();
  private readonly closeListeners = new Set<(why: string) => void>();
  private closed = false;

  private constructor(private readonly socket: Socket) {
    socket.on(
      'data',
      lineReader((line) => this.receive(line), {
        // A snapshot answer is well under this; a server sending more is broken or hostile.
        maxLineBytes: MAX_RESPONSE_LINE_BYTES,
        onOverflow: () => {
          socket.destroy();
          this.shutdown(`the monitor sent a line longer than ${MAX_RESPONSE_LINE_BYTES} bytes`);
        },
      }),
    );
    socket.on('close', () => this.shutdown('the monitor closed the connection'));
    socket.on('error', (e) => this.shutdown(e.message));
  }

  static connect(path: string, timeoutMs = 5000): Promise<MonitorClient> {
    return new Promise((resolve, reject) => {
      const socket = createConnection(path);
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new Error(`--attach ${path}: no answer within ${timeoutMs} ms`));
      }, timeoutMs);
      socket.once('connect', () => {
        clearTimeout(timer);
        resolve(new MonitorClient(socket));
      });
      socket.once('error', (e) => {
        clearTimeout(timer);
        reject(new Error(`--attach ${path}: ${e.message}`));
      });
    });
  }

  request<K extends CommandName>(cmd: K, args: Commands[K]['args']): Promise<Commands[K]['result']> {
    if (this.closed) return Promise.reject(new Error('the monitor connection is closed'));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.socket.write(encodeLine({ id, cmd, args }));
    });
  }

  onEvent(listener: (ev: MonitorEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  onClose(listener: (why: string) => void): void {
    this.closeListeners.add(listener);
  }

  close(): void {
    this.socket.end();
    this.shutdown('closed by the client');
  }

  private receive(line: string): void {
    let msg: MonitorResponse | MonitorEvent;
    try {
      msg = JSON.parse(line) as MonitorResponse | MonitorEvent;
    } catch {
      return;
    }
    if ('event' in msg) {
      for (const l of this.listeners) l(msg);
      return;
    }
    const p = typeof msg.id === 'number' ? this.pending.get(msg.id) : undefined;
    if (!p) return;
    this.pending.delete(msg.id as number);
    if (msg.ok) p.resolve(msg.result);
    else p.reject(new Error(msg.error));
  }

  private shutdown(why: string): void {
    if (this.closed) return;
    this.closed = true;
    for (const p of this.pending.values()) p.reject(new Error(why));
    this.pending.clear();
    for (const l of this.closeListeners) l(why);
  }
}
