/**
 * GDB remote serial protocol framing: `$payload#cs` packets with a modulo-256
 * checksum, `}`-escaping of `#$}*` (XOR 0x20), run-length encoding (`x*n`,
 * count = n - 29), acks (`+`/`-`) unless no-ack mode is on, and the bare 0x03
 * byte that is gdb's Ctrl-C. No npm package does this for a server (the ones
 * there are gdb *clients* or MI parsers), so it is written here and unit-tested.
 */

export const INTERRUPT_BYTE = 0x03;

/** Most payload bytes accepted in one packet; gdb is told this as PacketSize. */
export const MAX_PACKET_BYTES = 0x4000;

export type Received =
  | { kind: 'packet'; payload: Buffer }
  | { kind: 'interrupt' }
  | { kind: 'ack' }
  | { kind: 'nak' }
  /** A packet that failed its checksum or was malformed: answered with `-` (or dropped in no-ack mode). */
  | { kind: 'bad'; reason: string };

export function checksum(data: Uint8Array): number {
  let sum = 0;
  for (const b of data) sum = (sum + b) & 0xff;
  return sum;
}

const NEEDS_ESCAPE = new Set([0x23, 0x24, 0x7d, 0x2a]); // # $ } *

/** Escapes binary data for `X`, `qXfer` and friends. */
export function escapeBinary(data: Uint8Array): Buffer {
  const out: number[] = [];
  for (const b of data) {
    if (NEEDS_ESCAPE.has(b)) out.push(0x7d, b ^ 0x20);
    else out.push(b);
  }
  return Buffer.from(out);
}

/** Undoes `}` escapes (binary write packets); a trailing lone `}` is an error. */
export function unescapeBinary(data: Uint8Array): Buffer {
  const out = Buffer.alloc(data.length);
  let n = 0;
  for (let i = 0; i < data.length; i++) {
    const b = data[i]!;
    if (b === 0x7d) {
      if (i + 1 >= data.length) throw new PacketError('escape character } at the end of binary data');
      out[n++] = data[++i]! ^ 0x20;
    } else out[n++] = b;
  }
  return out.subarray(0, n);
}

/** Expands run-length encoding: `X*n` repeats X (n - 29) more times. */
export function expandRunLength(data: Uint8Array): Buffer {
  const out: number[] = [];
  for (let i = 0; i < data.length; i++) {
    const b = data[i]!;
    if (b === 0x2a) {
      if (out.length === 0 || i + 1 >= data.length) throw new PacketError(`run-length marker * at offset ${i} without a byte to repeat or a count`);
      const count = data[++i]! - 29;
      if (count < 0) throw new PacketError(`run-length count byte 0x${data[i]!.toString(16)} at offset ${i} is below 29`);
      const prev = out[out.length - 1]!;
      for (let k = 0; k < count; k++) out.push(prev);
    } else out.push(b);
  }
  return Buffer.from(out);
}

/** Frames a payload: `$` + payload (escaped where needed) + `#` + two hex digits. */
export function framePacket(payload: string | Uint8Array): Buffer {
  const body = typeof payload === 'string' ? Buffer.from(payload, 'latin1') : Buffer.from(payload);
  return Buffer.concat([Buffer.from('$'), body, Buffer.from(`#${checksum(body).toString(16).padStart(2, '0')}`)]);
}

export class PacketError extends Error {
  override name = 'PacketError';
}

/**
 * Incremental parser for the bytes gdb sends. Feed it chunks as they arrive;
 * it returns whole packets, acks and interrupts in order. Garbage between
 * packets is skipped (gdb itself does this).
 */
export class PacketReader {
  private buf: number[] = [];
  private inPacket = false;
  /** Bytes after `#` still to read (the checksum). */
  private checksumLeft = -1;
  private sumText = '';

  feed(chunk: Uint8Array): Received[] {
    const out: Received[] = [];
    for (const b of chunk) {
      if (!this.inPacket) {
        if (b === 0x24) {
          this.inPacket = true;
          this.buf = [];
          this.checksumLeft = -1;
          this.sumText = '';
        } else if (b === 0x2b) out.push({ kind: 'ack' });
        else if (b === 0x2d) out.push({ kind: 'nak' });
        else if (b === INTERRUPT_BYTE) out.push({ kind: 'interrupt' });
        continue;
      }
      if (this.checksumLeft > 0) {
        this.sumText += String.fromCharCode(b);
        if (--this.checksumLeft === 0) {
          this.inPacket = false;
          out.push(this.finish());
        }
        continue;
      }
      if (b === 0x23) {
        this.checksumLeft = 2;
        continue;
      }
      if (b === 0x24) {
        // A new packet started before this one ended: the old one is lost.
        out.push({ kind: 'bad', reason: 'packet interrupted by a new $' });
        this.buf = [];
        continue;
      }
      if (this.buf.length > MAX_PACKET_BYTES * 2) {
        out.push({ kind: 'bad', reason: `packet longer than ${MAX_PACKET_BYTES * 2} bytes` });
        this.inPacket = false;
        continue;
      }
      this.buf.push(b);
    }
    return out;
  }

  private finish(): Received {
    const raw = Buffer.from(this.buf);
    this.buf = [];
    if (!/^[0-9a-fA-F]{2}$/.test(this.sumText)) return { kind: 'bad', reason: `checksum '${this.sumText}' is not two hex digits` };
    const want = Number.parseInt(this.sumText, 16);
    const got = checksum(raw);
    if (want !== got) return { kind: 'bad', reason: `checksum mismatch: packet says ${this.sumText}, data sums to ${got.toString(16).padStart(2, '0')}` };
    try {
      return { kind: 'packet', payload: raw.includes(0x2a) ? expandRunLength(raw) : raw };
    } catch (e) {
      return { kind: 'bad', reason: (e as Error).message };
    }
  }
}

/** Hex helpers for register and memory payloads. */
export function toHex(data: Uint8Array): string {
  return Buffer.from(data).toString('hex');
}

export function fromHex(text: string, what: string): Buffer {
  if (text.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(text)) throw new PacketError(`${what}: '${text.slice(0, 40)}' is not an even number of hex digits`);
  return Buffer.from(text, 'hex');
}

export function parseHexNumber(text: string, what: string): bigint {
  if (!/^[0-9a-fA-F]{1,16}$/.test(text)) throw new PacketError(`${what}: '${text.slice(0, 40)}' is not a hex number`);
  return BigInt(`0x${text}`);
}
