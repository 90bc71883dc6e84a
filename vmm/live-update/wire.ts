/**
 * The live-update channel between the old and the new process: a Unix
 * socket pair (the child's fd 4, made by spawn's 'pipe'). Each message is
 * [u32 total][u32 header length][JSON header][payload bytes]; the payload
 * carries the state record in the snapshot codec (CRC per section).
 */
import { readFileSync } from 'node:fs';
import type { Socket } from 'node:net';

export type UpdateMessage =
  /** new -> old: engines built and the RAM file mapped; guests are still running in the old process. */
  | { type: 'ready'; pid: number; prepareMs: number; hcVersion: number; liveUpdateVersion: number; inode: number }
  /** old -> new: a record taken while the VMs run on (payload): the successor adopts it as a rehearsal and drops it, so the real adoption runs warm. */
  | { type: 'preview' }
  /** new -> old: the rehearsal worked; the real record may come. */
  | { type: 'rehearsed'; ms: number }
  /** old -> new: the VMs are paused; the payload is the record. */
  | { type: 'state'; pausedAt: number; settings: SuccessorSettings }
  /** new -> old: the record is adopted; nothing has run yet. */
  | { type: 'adopted'; adoptMs: number; rssAnonBeforeKiB: number; rssAnonAfterKiB: number; how?: string; adoptCpuMs?: number }
  /** new -> old: the record is refused; the old process resumes. */
  | { type: 'refused'; reason: string }
  /** old -> new: commit; the old process will never run these VMs again. */
  | { type: 'go'; sentAt: number }
  /** new -> old: the VMs run in the new process. */
  | { type: 'running'; goReceivedAt: number; resumedAt: number; firstSlices: { vm: string; at: number }[] }
  /** old -> new: the monitor socket path is free. */
  | { type: 'released' };

/** What the successor needs to go on being the same `run` for the user. */
export interface SuccessorSettings {
  /** COM1 of the first VM to stdout (false with --json: the whole transcript is printed at the end). */
  json: boolean;
  monitor: string | null;
  storeDir: string;
  /** Wall-clock (epoch ms) deadline of --timeout, or null. */
  deadline: number | null;
  label: string;
  /** Wall time and CPU time already spent by the predecessors (for the final --json host figures). */
  wallMsBefore: number;
  cpuMsBefore: number;
}

const MAX_MESSAGE = 1 << 30;

export class UpdateChannel {
  private buf: Buffer = Buffer.alloc(0);
  private readonly queue: { msg: UpdateMessage; payload: Uint8Array }[] = [];
  private waiter: ((v: { msg: UpdateMessage; payload: Uint8Array } | Error) => void) | null = null;
  private closed: Error | null = null;

  constructor(readonly socket: Socket) {
    socket.on('data', (d: Buffer) => this.onData(d));
    const end = (why: string): void => {
      this.closed ??= new Error(why);
      this.flushWaiter();
    };
    socket.on('end', () => end('the other process closed the update channel'));
    socket.on('close', () => end('the update channel closed'));
    socket.on('error', (e) => end(`update channel: ${e.message}`));
  }

  send(msg: UpdateMessage, payload: Uint8Array = new Uint8Array(0)): void {
    const header = Buffer.from(JSON.stringify(msg), 'utf8');
    const frame = Buffer.alloc(8 + header.length + payload.length);
    frame.writeUInt32LE(4 + header.length + payload.length, 0);
    frame.writeUInt32LE(header.length, 4);
    header.copy(frame, 8);
    frame.set(payload, 8 + header.length);
    this.socket.write(frame);
  }

  /** The next message; rejects when the channel closes or `timeoutMs` passes. */
  next(timeoutMs = Infinity): Promise<{ msg: UpdateMessage; payload: Uint8Array }> {
    const queued = this.queue.shift();
    if (queued) return Promise.resolve(queued);
    if (this.closed) return Promise.reject(this.closed);
    return new Promise((resolve, reject) => {
      const timer = Number.isFinite(timeoutMs)
        ? setTimeout(() => {
            this.waiter = null;
            reject(new TimeoutError(`no answer within ${timeoutMs} ms`));
          }, timeoutMs)
        : null;
      this.waiter = (v) => {
        if (timer) clearTimeout(timer);
        this.waiter = null;
        if (v instanceof Error) reject(v);
        else resolve(v);
      };
    });
  }

  close(): void {
    this.socket.end();
  }

  /** Ends the channel once everything sent has been written (a process about to exit must not lose its last message). */
  closeFlushed(): Promise<void> {
    return new Promise((resolve) => {
      if (this.socket.destroyed || this.socket.writableFinished) return resolve();
      this.socket.end(() => resolve());
      this.socket.once('close', () => resolve());
    });
  }

  private onData(d: Buffer): void {
    this.buf = this.buf.length === 0 ? d : Buffer.concat([this.buf, d]);
    while (this.buf.length >= 4) {
      const total = this.buf.readUInt32LE(0);
      if (total < 4 || total > MAX_MESSAGE) {
        this.closed = new Error(`update channel: bad frame length ${total}`);
        this.socket.destroy();
        this.flushWaiter();
        return;
      }
      if (this.buf.length < 4 + total) return;
      const hlen = this.buf.readUInt32LE(4);
      let msg: UpdateMessage;
      try {
        msg = JSON.parse(this.buf.subarray(8, 8 + hlen).toString('utf8')) as UpdateMessage;
      } catch (e) {
        this.closed = new Error(`update channel: bad message header: ${(e as Error).message}`);
        this.socket.destroy();
        this.flushWaiter();
        return;
      }
      const payload = new Uint8Array(this.buf.subarray(8 + hlen, 4 + total));
      this.buf = this.buf.subarray(4 + total);
      this.queue.push({ msg, payload });
    }
    this.flushWaiter();
  }

  private flushWaiter(): void {
    if (!this.waiter) return;
    const q = this.queue.shift();
    if (q) this.waiter(q);
    else if (this.closed) this.waiter(this.closed);
  }
}

export class TimeoutError extends Error {
  override name = 'TimeoutError';
}

/** Wall-clock milliseconds comparable between processes (CLOCK_REALTIME with sub-ms resolution). */
export function epochMs(): number {
  return performance.timeOrigin + performance.now();
}

/** RssAnon of this process in KiB (private memory: a copy of guest RAM would show here). */
export function rssAnonKiB(): number {
  return procStatusKiB('RssAnon');
}

export function procStatusKiB(field: string, pid: number | 'self' = 'self'): number {
  try {
    // Read synchronously: tiny file.
    const text = readProc(`/proc/${pid}/status`);
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(text);
    return m ? Number(m[1]) : -1;
  } catch {
    return -1;
  }
}

function readProc(path: string): string {
  return readFileSync(path, 'utf8');
}
