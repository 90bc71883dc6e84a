/** Newline-delimited JSON framing for the monitor socket (both ends). */

/** One message as one line; BigInt values (should any slip in) become hex strings. */
export const encodeLine = (value: unknown): string => JSON.stringify(value, (_k, v: unknown) => (typeof v === 'bigint' ? `0x${v.toString(16)}` : v)) + '\n';

/** The longest request line a monitor server accepts (requests are small; serial-input is capped at 64 KiB of text). */
export const MAX_LINE_BYTES = 1024 * 1024;

export interface LineReaderOptions {
  /** A longer line is reported once through onOverflow, as soon as it is too long, and discarded up to its newline (default: unbounded). */
  maxLineBytes?: number;
  onOverflow?: () => void;
}

const NL = 0x0a;

/**
 * Splits a byte stream into lines; `onLine` gets each complete, non-empty line
 * without its newline. Chunks are kept as they arrive and scanned once, so a
 * long line costs linear time; with `maxLineBytes`, memory stays bounded by
 * it whatever a peer sends.
 */
export function lineReader(onLine: (line: string) => void, opts: LineReaderOptions = {}): (chunk: Buffer) => void {
  const max = opts.maxLineBytes ?? Infinity;
  let parts: Buffer[] = [];
  let pendingBytes = 0;
  /** Skipping the rest of an over-long line, up to its newline. */
  let discarding = false;
  return (chunk) => {
    let start = 0;
    while (start < chunk.length) {
      const nl = chunk.indexOf(NL, start);
      const end = nl < 0 ? chunk.length : nl;
      if (!discarding && pendingBytes + (end - start) > max) {
        discarding = true;
        parts = [];
        pendingBytes = 0;
        opts.onOverflow?.();
      }
      if (discarding) {
        if (nl >= 0) discarding = false;
      } else if (nl >= 0) {
        const tail = chunk.subarray(start, end);
        const text = (parts.length === 0 ? tail : Buffer.concat([...parts, tail])).toString('utf8').trim();
        parts = [];
        pendingBytes = 0;
        if (text) onLine(text);
      } else {
        // Copied: the socket may reuse the chunk's memory.
        parts.push(Buffer.from(chunk.subarray(start, end)));
        pendingBytes += end - start;
      }
      if (nl < 0) break;
      start = nl + 1;
    }
  };
}
