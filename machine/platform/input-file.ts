/**
 * Reading a file the user named (a guest image, a layout's index.json):
 * stat first, so a directory, a device (/dev/zero never ends), a FIFO or an
 * absurdly large file is refused with a clear message before a byte is read.
 */
import { closeSync, fstatSync, openSync, readSync, statSync, type Stats } from 'node:fs';

export class InputFileError extends Error {
  override name = 'InputFileError';
  constructor(
    readonly path: string,
    message: string,
  ) {
    super(`${path}: ${message}`);
  }
}

const MiB = 1024 * 1024;

export interface InputFileOptions {
  /** What the file is, for messages ("guest image", "OCI index"). */
  what: string;
  /** Files larger than this are refused without reading them. */
  maxBytes: number;
}

const SYSTEM_REASONS: Record<string, string> = {
  ENOENT: 'no such file',
  EACCES: 'permission denied',
  EPERM: 'permission denied',
  ENOTDIR: 'a component of the path is not a directory',
  ELOOP: 'too many symbolic links',
  ENAMETOOLONG: 'the path is too long',
  EISDIR: 'is a directory',
};

/** The message for a failed file-system call on a user's path (no stack trace: it is the user's input). */
export function describeFsError(e: unknown): string {
  const err = e as NodeJS.ErrnoException;
  return (err.code && SYSTEM_REASONS[err.code]) ?? err.message;
}

function kindOf(st: Stats): string {
  if (st.isDirectory()) return 'a directory';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  if (st.isFIFO()) return 'a FIFO';
  if (st.isSocket()) return 'a socket';
  return 'not a regular file';
}

const sizeText = (n: number): string => (n >= MiB ? `${(n / MiB).toFixed(1)} MiB` : `${n} bytes`);

/** Checks the path names a regular file no larger than `maxBytes`; returns its size. */
export function checkInputFile(path: string, opts: InputFileOptions): number {
  let st: Stats;
  try {
    st = statSync(path);
  } catch (e) {
    throw new InputFileError(path, `${opts.what}: ${describeFsError(e)}`);
  }
  if (!st.isFile()) throw new InputFileError(path, `${opts.what}: is ${kindOf(st)}, not a regular file`);
  if (st.size > opts.maxBytes) throw new InputFileError(path, `${opts.what}: is ${sizeText(st.size)}, more than the ${sizeText(opts.maxBytes)} allowed`);
  return st.size;
}

/**
 * Reads a regular file of at most `maxBytes`. The size is checked on the open
 * descriptor too (the path could be swapped between stat and open), and the
 * read stops at that size, so a file growing meanwhile cannot run us out of memory.
 */
export function readInputFile(path: string, opts: InputFileOptions): Uint8Array {
  checkInputFile(path, opts);
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (e) {
    throw new InputFileError(path, `${opts.what}: ${describeFsError(e)}`);
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new InputFileError(path, `${opts.what}: is ${kindOf(st)}, not a regular file`);
    if (st.size > opts.maxBytes) throw new InputFileError(path, `${opts.what}: is ${sizeText(st.size)}, more than the ${sizeText(opts.maxBytes)} allowed`);
    const out = new Uint8Array(st.size);
    let done = 0;
    while (done < out.length) {
      const n = readSync(fd, out, done, out.length - done, done);
      if (n === 0) break;
      done += n;
    }
    return done === out.length ? out : out.subarray(0, done);
  } catch (e) {
    if (e instanceof InputFileError) throw e;
    throw new InputFileError(path, `${opts.what}: ${describeFsError(e)}`);
  } finally {
    closeSync(fd);
  }
}
