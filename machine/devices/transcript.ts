/**
 * Console transcripts (COM1 of the machine and of each guest) as byte
 * strings: one char per byte, U+0000-U+00FF, so 0x80-0xFF survive
 * (`Buffer.from(text, 'latin1')` gives the bytes back). A chatty guest must
 * not grow the emulator's memory without end: a transcript keeps its last
 * TRANSCRIPT_KEEP_BYTES, as debugcon does; the live output (stdout, monitor
 * console events) has every byte.
 */

/** Bytes of a console's output kept for reports and views (the last ones). */
export const TRANSCRIPT_KEEP_BYTES = 1 << 20;
/** Appends between flattenings: a string grown a char at a time is a chain of cons cells (~32 bytes per char). */
const FLATTEN_EVERY = 4096;

let appends = 0;

/**
 * Appends to a transcript, trimming it to its last TRANSCRIPT_KEEP_BYTES once
 * it has doubled: at most 2x the bound, amortized O(1) per byte.
 */
export function appendTranscript(transcript: string, text: string): string {
  const next = transcript + text;
  if (next.length > 2 * TRANSCRIPT_KEEP_BYTES) return next.slice(-TRANSCRIPT_KEEP_BYTES);
  // Reading a char flattens the cons chain into one sequential string.
  if (++appends % FLATTEN_EVERY === 0) next.charCodeAt(0);
  return next;
}

/** A byte string's bytes (for writing a transcript out as bytes). */
export const transcriptBytes = (transcript: string): Buffer => Buffer.from(transcript, 'latin1');
