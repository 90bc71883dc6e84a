/**
 * The CLI's stdout and stderr. A reader that goes away (`| head -1`) or a
 * full disk (`>/dev/full`) must not crash the emulator with EPIPE or change
 * the guest's exit status: output to a closed stream is dropped, and the run
 * goes on to its own end. Serial bytes are written as bytes: the emulator
 * keeps serial output as byte strings (one char per byte, U+0000-U+00FF).
 */

export interface Output {
  /** Text (UTF-8) or bytes. Dropped once the stream has failed. */
  write(data: string | Uint8Array): void;
  /** A byte string (one char per byte, as serial transcripts are) written as those bytes. */
  writeBytes(byteString: string): void;
  /** Why the stream stopped taking output, or null while it works. */
  readonly failure: string | null;
}

function guard(stream: NodeJS.WritableStream & { destroyed?: boolean }): Output {
  let failure: string | null = null;
  stream.on('error', (e: NodeJS.ErrnoException) => {
    failure ??= e.code ?? e.message;
  });
  const write = (data: string | Uint8Array): void => {
    if (failure !== null || stream.destroyed) return;
    try {
      stream.write(data);
    } catch (e) {
      failure ??= (e as NodeJS.ErrnoException).code ?? (e as Error).message;
    }
  };
  return {
    write,
    writeBytes: (s) => write(Buffer.from(s, 'latin1')),
    get failure() {
      return failure;
    },
  };
}

let streams: { out: Output; err: Output } | null = null;

/** Installs the guards once (before any output); later calls return the same pair. */
export function cliOutput(): { out: Output; err: Output } {
  streams ??= { out: guard(process.stdout), err: guard(process.stderr) };
  return streams;
}
