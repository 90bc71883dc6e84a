/** A real OCI registry (Debian's docker-registry) on loopback, and skopeo, for tests. */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';

export const canRunRegistry = ['docker-registry', 'skopeo'].every((c) => spawnSync('sh', ['-c', `command -v ${c}`]).status === 0);

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      const port = typeof a === 'object' && a ? a.port : 0;
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

export function run(cmd: string, args: string[], timeoutMs = 30_000): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const c = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    c.stdout.on('data', (d) => (out += d));
    c.stderr.on('data', (d) => (out += d));
    const t = setTimeout(() => c.kill('SIGKILL'), timeoutMs);
    c.on('close', (code) => {
      clearTimeout(t);
      resolve({ code, out });
    });
  });
}

export interface LoopbackRegistry {
  port: number;
  url: string;
  stop(): void;
}

/** Starts docker-registry on 127.0.0.1 with storage in a temp dir (removed once it has stopped); resolves once it accepts connections. */
export async function startRegistry(): Promise<LoopbackRegistry> {
  const port = await freePort();
  const dir = mkdtempSync(path.join(tmpdir(), 'fm-registry-'));
  const cfg = path.join(dir, 'config.yml');
  writeFileSync(cfg, `version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: ${dir}/data\nhttp:\n  addr: 127.0.0.1:${port}\n`);
  const proc: ChildProcess = spawn('docker-registry', ['serve', cfg], { stdio: 'ignore' });
  const cleanUp = () => rmSync(dir, { recursive: true, force: true });
  const stop = (signal: NodeJS.Signals) => {
    if (proc.exitCode !== null || proc.signalCode !== null) cleanUp();
    else {
      proc.once('exit', cleanUp);
      proc.kill(signal);
    }
  };
  for (let i = 0; i < 100; i++) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => {
        s.end();
        resolve(true);
      });
      s.on('error', () => resolve(false));
    });
    if (ok) return { port, url: `http://127.0.0.1:${port}`, stop: () => stop('SIGTERM') };
    await new Promise((r) => setTimeout(r, 100));
  }
  stop('SIGKILL');
  throw new Error('docker-registry did not start');
}

/** Pushes one container of an OCI layout with its digests preserved (uncompressed layers, as the OS expects). */
export async function pushContainer(layoutDir: string, name: string, dest: string): Promise<void> {
  const r = await run('skopeo', ['copy', '--dest-tls-verify=false', '--preserve-digests', `oci:${layoutDir}:${name}`, dest]);
  if (r.code !== 0) throw new Error(`skopeo copy ${name} failed: ${r.out}`);
}
