/**
 * One end of a migration connection: frames out (with back-pressure and an
 * optional bandwidth limit), frames in (decoded as they arrive), and every
 * failure (a cut link, a decoder refusal, a peer that closes) surfaced as
 * the rejection of whatever waits for the next frame.
 */
import type { Socket } from 'node:net';
import { FrameDecoder, FrameEncoder, frameTypeName, MigrationStreamError, type Frame, type FrameTypeCode } from './stream.js';

/** Queued output beyond which the sender waits for the socket to drain. */
const HIGH_WATER = 4 * 1024 * 1024;

export class MigrationChannel {
  private readonly decoder: FrameDecoder;
  private readonly encoder = new FrameEncoder();
  private readonly queue: Frame[] = [];
  private waiter: { resolve: (f: Frame) => void; reject: (e: Error) => void } | null = null;
  private error: Error | null = null;
  bytesOut = 0;
  bytesIn = 0;
  /** Bytes per second, or null for no limit. */
  bandwidth: number | null = null;
  private limitStart = 0;
  private limitBytes = 0;

  constructor(
    readonly socket: Socket,
    inbound: string,
  ) {
    this.decoder = new FrameDecoder(inbound);
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => {
      this.bytesIn += chunk.length;
      try {
        for (const f of this.decoder.push(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength))) this.deliver(f);
      } catch (e) {
        this.fail(e as Error);
        socket.destroy();
      }
    });
    socket.on('end', () => {
      try {
        this.decoder.end();
        this.fail(new Error(`connection closed by the peer (after ${this.decoder.position} bytes)`));
      } catch (e) {
        this.fail(e as Error);
      }
    });
    socket.on('error', (e) => this.fail(new Error(`connection: ${e.message}`)));
    socket.on('close', () => this.fail(new Error('connection closed')));
  }

  get failed(): Error | null {
    return this.error;
  }

  /** Writes one frame; waits while the socket's queue is long or the bandwidth budget is spent. */
  async send(type: FrameTypeCode, payload?: Uint8Array): Promise<void> {
    if (this.error) throw this.error;
    const bytes = this.encoder.next(type, payload);
    if (this.bandwidth !== null) {
      const now = performance.now();
      if (this.limitBytes === 0 || now - this.limitStart > 1000) {
        this.limitStart = now;
        this.limitBytes = 0;
      }
      this.limitBytes += bytes.length;
      const due = this.limitStart + (this.limitBytes / this.bandwidth) * 1000;
      if (due > now + 1) await new Promise((r) => setTimeout(r, due - now));
    }
    if (this.error) throw this.error;
    this.bytesOut += bytes.length;
    this.socket.write(bytes);
    if (this.socket.writableLength > HIGH_WATER) await this.drain();
  }

  async drain(): Promise<void> {
    if (this.error) throw this.error;
    if (this.socket.writableLength === 0) return;
    await new Promise<void>((resolve, reject) => {
      const done = (): void => {
        this.socket.off('drain', done);
        this.socket.off('close', done);
        if (this.error) reject(this.error);
        else resolve();
      };
      this.socket.once('drain', done);
      this.socket.once('close', done);
    });
  }

  /** The next frame from the peer; rejects on any failure, or after `timeoutMs`. */
  next(timeoutMs = 60_000): Promise<Frame> {
    const f = this.queue.shift();
    if (f) return Promise.resolve(f);
    if (this.error) return Promise.reject(this.error);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => {
        this.waiter = null;
        reject(new Error(`no frame from the peer within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiter = {
        resolve: (fr) => {
          clearTimeout(t);
          resolve(fr);
        },
        reject: (e) => {
          clearTimeout(t);
          reject(e);
        },
      };
    });
  }

  /** A frame that arrived without being waited for (REFUSE, ABORT), if any. */
  poll(): Frame | undefined {
    return this.queue.shift();
  }

  /** Waits for the next frame and checks its type (an ABORT/REFUSE from the peer becomes its error). */
  async expect(type: FrameTypeCode, timeoutMs?: number): Promise<Frame> {
    const f = await this.next(timeoutMs);
    if (f.type === type) return f;
    throw new MigrationStreamError(`frame ${f.seq}`, f.offset, 'type', `expected ${frameTypeName(type)}, got ${frameTypeName(f.type)}${f.payload.length > 0 && f.payload.length < 4096 ? `: ${new TextDecoder().decode(f.payload)}` : ''}`);
  }

  close(): void {
    this.fail(new Error('connection closed'));
    this.socket.end();
    this.socket.destroySoon();
  }

  private deliver(f: Frame): void {
    const w = this.waiter;
    if (w) {
      this.waiter = null;
      w.resolve(f);
    } else this.queue.push(f);
  }

  private fail(e: Error): void {
    if (this.error) return;
    this.error = e;
    const w = this.waiter;
    this.waiter = null;
    w?.reject(e);
  }
}

/** Wall-clock milliseconds, comparable between two processes on one host (the switch-over's legs). */
export const epochMs = (): number => performance.timeOrigin + performance.now();

/** `tcp:HOST:PORT` (QEMU's spelling). */
export function parseTcpUri(uri: string): { host: string; port: number } {
  const m = /^tcp:(\[[^\]]+\]|[^:]*):(\d{1,5})$/.exec(uri);
  if (!m) throw new Error(`'${uri}' is not tcp:HOST:PORT`);
  const port = Number(m[2]);
  if (port > 65535) throw new Error(`'${uri}': port ${port} is not 0..65535`);
  const host = m[1]!.replace(/^\[|\]$/g, '') || '0.0.0.0';
  return { host, port };
}
