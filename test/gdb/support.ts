/**
 * Drives the real gdb (Debian's /usr/bin/gdb) against a `firmament ... --gdb
 * tcp::0` child: the stub picks a free loopback port and says which on
 * stderr. Children are always killed; the timeouts are generous safety nets,
 * never assertions.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const FIRMWARE_ELF = path.join(ROOT, 'images/build/firmware.elf');
export const guestElf = (name: string, elf64 = true): string => path.join(ROOT, 'images/build/guests', `${name}.elf${elf64 ? '64' : ''}`);
const SAFETY_MS = 150_000;

export interface Firmament {
  child: ChildProcess;
  port: number;
  stderr(): string;
  stdout(): string;
  /** Resolves with the exit status once the process ends. */
  exited: Promise<number | null>;
  kill(): Promise<void>;
}

export async function startFirmament(args: string[], env: Record<string, string> = {}): Promise<Firmament> {
  const child = spawn(process.execPath, [path.join(ROOT, 'tools/firmament.mjs'), ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  let err = '';
  let out = '';
  child.stdout!.on('data', (b: Buffer) => (out += b.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const safety = setTimeout(() => child.kill('SIGKILL'), SAFETY_MS);
  void exited.then(() => clearTimeout(safety));
  const port = await new Promise<number>((resolve, reject) => {
    child.stderr!.on('data', (b: Buffer) => {
      err += b.toString();
      const m = /gdb: listening on [^ ]+:(\d+)/.exec(err);
      if (m) resolve(Number(m[1]));
    });
    void exited.then((code) => reject(new Error(`firmament exited (${code}) before the gdb stub listened:\n${err}`)));
  });
  return {
    child,
    port,
    stderr: () => err,
    stdout: () => out,
    exited,
    kill: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    },
  };
}

export interface GdbRun {
  output: string;
  code: number | null;
}

/**
 * `gdb -batch -nx` with the ELF for symbols, connected first, then `commands`.
 * `onOutput` sees the output as it grows (to send Ctrl-C at the right moment).
 */
export function runGdb(port: number, elf: string | null, commands: string[], onOutput?: (text: string, gdb: ChildProcess) => void): Promise<GdbRun> {
  const args = ['-batch', '-nx', ...(elf ? [elf] : []), '-ex', 'set confirm off', '-ex', `target remote 127.0.0.1:${port}`, ...commands.flatMap((c) => ['-ex', c])];
  const gdb = spawn('gdb', args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const grow = (b: Buffer): void => {
    output += b.toString();
    onOutput?.(output, gdb);
  };
  gdb.stdout!.on('data', grow);
  gdb.stderr!.on('data', grow);
  const safety = setTimeout(() => gdb.kill('SIGKILL'), SAFETY_MS);
  return new Promise((resolve) =>
    gdb.on('exit', (code) => {
      clearTimeout(safety);
      resolve({ output, code });
    }),
  );
}

/** The value gdb prints for `p/x EXPR` as `$N = 0x...`, in order. */
export function printedValues(output: string): string[] {
  return [...output.matchAll(/^\$\d+ = (.+)$/gm)].map((m) => m[1]!.trim());
}
