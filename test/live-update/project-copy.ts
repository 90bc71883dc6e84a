/**
 * A second copy of this checkout in a temporary directory, with a few edits:
 * the "new version" a live update goes to. Sources are copied (tracked and
 * untracked, not ignored); node_modules, .cache and images/build are linked.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { MonitorClient } from '../../tui/monitor-client.js';

export const ROOT = resolve(import.meta.dirname, '../..');
export const CLI = join(ROOT, 'tools/firmament.mjs');

export interface Edit {
  file: string;
  from: RegExp;
  to: string;
}

export function copyProject(dest: string, edits: readonly Edit[]): string {
  const files = execFileSync('git', ['ls-files', '-co', '--exclude-standard'], { cwd: ROOT, encoding: 'utf8' }).split('\n').filter(Boolean);
  for (const f of files) {
    const src = join(ROOT, f);
    if (!existsSync(src)) continue;
    mkdirSync(dirname(join(dest, f)), { recursive: true });
    copyFileSync(src, join(dest, f));
  }
  symlinkSync(join(ROOT, 'node_modules'), join(dest, 'node_modules'));
  symlinkSync(join(ROOT, '.cache'), join(dest, '.cache'));
  mkdirSync(join(dest, 'images'), { recursive: true });
  symlinkSync(join(ROOT, 'images/build'), join(dest, 'images/build'));
  for (const e of edits) {
    const p = join(dest, e.file);
    const text = readFileSync(p, 'utf8');
    if (!e.from.test(text)) throw new Error(`copyProject: ${e.file} has no ${e.from}`);
    writeFileSync(p, text.replace(e.from, e.to));
  }
  return dest;
}

export interface RunProcess {
  child: ChildProcess;
  stdout(): string;
  stderr(): string;
  exited: Promise<number | null>;
}

/** `firmament run GUEST --shared-ram --monitor SOCK ...` as a user starts it; stdout is COM1. */
export function startRun(args: string[], env: Record<string, string> = {}): RunProcess {
  const child = spawn(process.execPath, [CLI, 'run', ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  child.stdout!.on('data', (d: Buffer) => out.push(d));
  child.stderr!.on('data', (d: Buffer) => err.push(d));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  return { child, stdout: () => Buffer.concat(out).toString('latin1'), stderr: () => Buffer.concat(err).toString('utf8'), exited };
}

/** A monitor client, retrying while the socket is not there yet (start-up, or between two processes of an update). */
export async function connectMonitor(path: string, timeoutMs = 120_000): Promise<MonitorClient> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    try {
      const c = await MonitorClient.connect(path, 2000);
      await c.request('hello', {});
      return c;
    } catch (e) {
      if (Date.now() > until) throw e;
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}
