/**
 * The start-up probes' results are cached per Unicorn build (GNU build ID): a cached start runs
 * no probe engine, uses exactly what the probes found, and never applies a result to another
 * build or in a broken shape.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { libraryBuildId } from '../../machine/cpu/unicorn/probe-cache.js';
import { loadUnicorn } from '../../machine/cpu/unicorn/binding.js';
import { NATIVE_HELPER } from '../../machine/cpu/unicorn/locate.js';

const ROOT = path.resolve(import.meta.dirname, '../..');
const DUMP = path.join(import.meta.dirname, 'fixtures/probe-dump.ts');

interface Dump {
  results: Record<string, unknown>;
  opened: number;
}

function dump(env: Record<string, string>): Dump {
  const r = spawnSync(process.execPath, ['--import', 'tsx', DUMP], { cwd: ROOT, encoding: 'utf8', env: { ...process.env, ...env }, timeout: 120_000 });
  if (r.status !== 0) throw new Error(`probe-dump failed (${r.status}): ${r.stderr}`);
  return JSON.parse(r.stdout) as Dump;
}

const cacheFile = (dir: string): string => {
  const files = readdirSync(dir).filter((f) => f.endsWith('.json'));
  expect(files).toHaveLength(1);
  return path.join(dir, files[0]!);
};

describe('probe cache', () => {
  it('a cached start opens no probe engine and gets exactly what the probes found', () => {
    const fresh = dump({ FIRMAMENT_PROBE_CACHE: '0' });
    expect(fresh.opened).toBeGreaterThanOrEqual(5); // the probes themselves
    expect(fresh.results['debugRegisterIntercept']).toBe(true);

    const dir = mkdtempSync(path.join(tmpdir(), 'fm-probes-'));
    const first = dump({ FIRMAMENT_PROBE_CACHE_DIR: dir });
    expect(first.results).toEqual(fresh.results);
    const file = cacheFile(dir);
    expect(path.basename(file)).toBe(`unicorn-${libraryBuildId(loadUnicorn().path)}.json`);

    const second = dump({ FIRMAMENT_PROBE_CACHE_DIR: dir });
    expect(second.results).toEqual(fresh.results);
    expect(second.opened).toBe(0);
  });

  it('uses the cached values (a changed value shows), and re-probes a result in the wrong shape', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'fm-probes-'));
    const fresh = dump({ FIRMAMENT_PROBE_CACHE_DIR: dir });
    const file = cacheFile(dir);
    const doc = JSON.parse(readFileSync(file, 'utf8')) as { results: Record<string, Record<string, unknown>> };
    const svm = fresh.results['svm'] as { vmcb: number; intercept: number };
    doc.results['svm'] = { vmcb: svm.vmcb + 8, intercept: svm.intercept };
    doc.results['contextLayout'] = { ...doc.results['contextLayout'], regs: 'twenty' };
    writeFileSync(file, JSON.stringify(doc));
    const next = dump({ FIRMAMENT_PROBE_CACHE_DIR: dir });
    expect(next.results['svm']).toEqual({ vmcb: svm.vmcb + 8, intercept: svm.intercept });
    expect(next.results['contextLayout']).toEqual(fresh.results['contextLayout']);
    const rewritten = JSON.parse(readFileSync(file, 'utf8')) as { results: Record<string, unknown> };
    expect(rewritten.results['contextLayout']).toEqual(fresh.results['contextLayout']);
  });

  it('a cache file of another build is not used', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'fm-probes-'));
    const fresh = dump({ FIRMAMENT_PROBE_CACHE_DIR: dir });
    const file = cacheFile(dir);
    const doc = JSON.parse(readFileSync(file, 'utf8')) as { buildId: string; results: Record<string, unknown> };
    // The right file name, but the content says it was measured on another build: ignored.
    doc.buildId = 'gnu-0000';
    doc.results['svm'] = { vmcb: 8, intercept: 16 };
    writeFileSync(file, JSON.stringify(doc));
    const next = dump({ FIRMAMENT_PROBE_CACHE_DIR: dir });
    expect(next.results).toEqual(fresh.results);
    expect(next.opened).toBeGreaterThan(0);
  });

  it('the build ID is the ELF note readelf shows; a file without one is identified by its SHA-256', () => {
    const r = spawnSync('readelf', ['-n', NATIVE_HELPER], { encoding: 'utf8' });
    const id = /Build ID: ([0-9a-f]+)/.exec(r.stdout)?.[1];
    if (id) expect(libraryBuildId(NATIVE_HELPER)).toBe(`gnu-${id}`);
    const lib = loadUnicorn().path;
    const libId = /Build ID: ([0-9a-f]+)/.exec(spawnSync('readelf', ['-n', lib], { encoding: 'utf8' }).stdout)?.[1];
    expect(libId).toBeDefined();
    expect(libraryBuildId(lib)).toBe(`gnu-${libId}`);
    const plain = path.join(mkdtempSync(path.join(tmpdir(), 'fm-probes-')), 'not-elf');
    writeFileSync(plain, 'abc');
    expect(libraryBuildId(plain)).toBe('sha256-ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
  });
});
