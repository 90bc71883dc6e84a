/**
 * Start-up of the CLI: compiled JavaScript in dist/ used only while it matches the sources, the
 * same output either way, and a plain `run` loading none of the heavy packages that only other
 * commands need (the TUI, the test runner, the OCI build tools, the debugger).
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
// @ts-expect-error: plain ESM script without declarations
import { buildJs, DIST, freshDistEntry, MANIFEST } from '../../tools/build-js.mjs';

const ROOT = path.resolve(import.meta.dirname, '../..');
const CLI = path.join(ROOT, 'tools/firmament.mjs');
const HELLO = path.join(ROOT, 'images/build/guests/hello.elf');
type Fresh = { entry: string | null; reason: string | null };
const fresh = freshDistEntry as (dist?: string) => Fresh;

const run = (env: Record<string, string>, ...args: string[]) => spawnSync(process.execPath, [CLI, ...args], { cwd: ROOT, encoding: 'utf8', env: { ...process.env, ...env }, timeout: 120_000 });

describe('compiled CLI (dist/)', () => {
  it('npm run build:js builds a dist/ that matches the sources, and it runs a guest exactly as the sources do', async () => {
    await (buildJs as (o: { quiet: boolean }) => Promise<unknown>)({ quiet: true });
    const d = fresh();
    expect(d.reason).toBeNull();
    expect(d.entry).toMatch(/\/dist\/main-\w+\.js$/);
    const manifest = JSON.parse(readFileSync(path.join(DIST as string, MANIFEST as string), 'utf8')) as { sources: Record<string, unknown> };
    expect(Object.keys(manifest.sources)).toContain('tools/cli/main.ts');
    expect(Object.keys(manifest.sources)).toContain('machine/cpu/unicorn/locate.ts');

    const compiled = run({}, 'run', HELLO, '--clock', 'virtual', '--json');
    const sources = run({ FIRMAMENT_TSX: '1' }, 'run', HELLO, '--clock', 'virtual', '--json');
    expect(compiled.status).toBe(1);
    expect(sources.status).toBe(1);
    // Host wall and CPU times differ from run to run; everything else (console, exits, virtual time) must not.
    const strip = (s: string): unknown => JSON.parse(s, (k, v: unknown) => (k === 'host' || k.endsWith('Ms') ? undefined : v));
    expect(strip(compiled.stdout)).toEqual(strip(sources.stdout));
    expect(JSON.parse(compiled.stdout).serial).toContain('Firmament hello guest');
    // Paths found relative to a module (PROJECT_ROOT) still point into the checkout, not into dist/.
    const containers = run({}, 'containers', 'list', '--json');
    expect(containers.status, containers.stderr).toBe(0);
  }, 300_000);

  it('a dist/ built from other sources is not used: a changed or deleted source makes it stale', () => {
    const dist = mkdtempSync(path.join(tmpdir(), 'fm-dist-'));
    writeFileSync(path.join(dist, 'main.js'), 'export async function main() { return 0; }\n');
    const src = 'machine/cpu/unicorn/locate.ts';
    const st = statSync(path.join(ROOT, src));
    const write = (sources: Record<string, { size: number; mtimeMs: number }>): void => writeFileSync(path.join(dist, 'manifest.json'), JSON.stringify({ entry: 'main.js', sources }));
    write({ [src]: { size: st.size, mtimeMs: st.mtimeMs } });
    expect(fresh(dist).entry).toMatch(/main\.js$/);
    write({ [src]: { size: st.size + 1, mtimeMs: st.mtimeMs } });
    expect(fresh(dist)).toEqual({ entry: null, reason: `${src} changed since dist/ was built` });
    write({ [src]: { size: st.size, mtimeMs: st.mtimeMs - 1000 } });
    expect(fresh(dist).entry).toBeNull();
    write({ 'machine/gone.ts': { size: 1, mtimeMs: 1 } });
    expect(fresh(dist)).toEqual({ entry: null, reason: 'machine/gone.ts is gone since dist/ was built' });
    const empty = mkdtempSync(path.join(tmpdir(), 'fm-dist-'));
    mkdirSync(path.join(empty, 'x'));
    expect(fresh(empty).entry).toBeNull();
  });

  it('run loads none of the packages only other commands need', () => {
    const log = path.join(mkdtempSync(path.join(tmpdir(), 'fm-mods-')), 'modules.txt');
    writeFileSync(log, '');
    const r = spawnSync(process.execPath, ['--import', path.join(import.meta.dirname, 'fixtures/log-modules.mjs'), CLI, 'run', HELLO, '--clock', 'virtual'], { cwd: ROOT, encoding: 'utf8', env: { ...process.env, FM_MODULE_LOG: log }, timeout: 120_000 });
    expect(r.status, r.stderr).toBe(1);
    const loaded = readFileSync(log, 'utf8');
    expect(loaded).toContain('/node_modules/koffi/'); // the log sees packages
    for (const pkg of ['iced-x86', 'zod', 'blessed', 'zx', 'proper-lockfile', 'toml-eslint-parser', 'fast-xml-parser']) expect(loaded, pkg).not.toContain(`/node_modules/${pkg}/`);
  });
});
