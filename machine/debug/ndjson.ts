/** Newline-delimited JSON framing for the monitor socket (both ends). */

/** One message as one line; BigInt values (should any slip in) become hex strings. */
export const encodeLine = (value: unknown): string => JSON.stringify(value, (_k, v: unknown) => (typeof v === 'bigint' ? `0x${v.toString(16)}` : v)) + '\n';

/** Splits a byte stream into lines; `onLine` gets each complete, non-empty line without its newline. */
export function lineReader(onLine: (line: string) => void): (chunk: Buffer) => void {
  let pending = '';
  return (chunk) => {
    pending += chunk.toString('utf8');
    let nl: number;
    while ((nl = pending.indexOf('\n')) >= 0) {
      const line = pending.slice(0, nl).trim();
      pending = pending.slice(nl + 1);
      if (line) onLine(line);
    }
  };
}
