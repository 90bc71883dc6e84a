/**
 * tools/oci-layout.mjs and tools/build-os.mjs: the OCI image layout of the
 * diagnostic containers (structure, digests, reproducibility), the fw_cfg
 * file contract shared with the TypeScript machine, the corruption helper,
 * and (when skopeo and docker-registry are installed) a registry round trip.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  buildOciLayout, checkLayout, corruptLayout, defaultContainers, FWCFG_BLOB_PREFIX, FWCFG_INDEX, layoutToFwCfgFiles,
  loadContainerMeta, makeTar, MT_CONFIG, MT_INDEX, MT_LAYER, MT_MANIFEST, readTar, REF_NAME,
} from '../../tools/oci-layout.mjs';
import { canRunRegistry, run, startRegistry, type LoopbackRegistry } from '../support/registry.js';

const ROOT = path.resolve(import.meta.dirname, '../..');
interface BuildOsModule {
  buildOs(opts?: { force?: boolean; quiet?: boolean; outDir?: string }): Promise<{ os: string; osSha256: string; containers: Record<string, string>; containerSha256: Record<string, string>; built: boolean }>;
}
const { buildOs } = (await import(pathToFileURL(path.join(ROOT, 'tools/build-os.mjs')).href)) as BuildOsModule;
const sha256 = (b: Uint8Array | string): string => createHash('sha256').update(b).digest('hex');

let tmp = '';
let layout = '';
let built: Awaited<ReturnType<typeof buildOciLayout>>;

beforeAll(async () => {
  tmp = mkdtempSync(path.join(os.tmpdir(), 'firmament-oci-'));
  built = await buildOciLayout({ quiet: true });
  layout = built.layoutDir;
}, 120_000);

afterAll(() => {
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

describe('OCI image layout', () => {
  it('is a valid layout: every digest and size matches its blob, media types, one tar layer each', () => {
    expect(checkLayout(layout)).toEqual([]);
    expect(readFileSync(path.join(layout, 'oci-layout'), 'utf8')).toBe('{"imageLayoutVersion":"1.0.0"}');
    const index = JSON.parse(readFileSync(path.join(layout, 'index.json'), 'utf8'));
    expect(index.schemaVersion).toBe(2);
    expect(index.mediaType).toBe(MT_INDEX);
    const names = index.manifests.map((m: { annotations: Record<string, string> }) => m.annotations[REF_NAME]);
    expect(names).toEqual(['cmos', 'fwcfg', 'memtest', 'timer', 'uart']);
    expect(built.containers.map((c) => c.name)).toEqual(names);
    for (const [i, d] of index.manifests.entries()) {
      expect(d.mediaType).toBe(MT_MANIFEST);
      expect(d.digest).toBe(built.containers[i]!.manifestDigest);
      const man = JSON.parse(readFileSync(path.join(layout, 'blobs/sha256', d.digest.slice(7)), 'utf8'));
      expect(man.config.mediaType).toBe(MT_CONFIG);
      expect(man.config.digest).toBe(built.containers[i]!.configDigest);
      expect(man.layers).toHaveLength(1);
      expect(man.layers[0].mediaType).toBe(MT_LAYER);
      expect(man.layers[0].digest).toBe(built.containers[i]!.layerDigest);
    }
    // no stray blobs: 3 per container
    expect(readdirSync(path.join(layout, 'blobs/sha256')).length).toBe(15);
  });

  it('configs carry the container.json metadata as labels, no timestamps, diff_id = layer digest', async () => {
    for (const c of built.containers) {
      const meta = await loadContainerMeta(c.name);
      const cfg = JSON.parse(readFileSync(path.join(layout, 'blobs/sha256', c.configDigest.slice(7)), 'utf8'));
      expect(cfg).toEqual({
        architecture: 'amd64',
        os: 'firmament',
        config: {
          Entrypoint: ['/container.elf'],
          Labels: {
            'org.firmament.name': c.name,
            'org.firmament.purpose': meta.purpose,
            'org.firmament.memory': String(meta.memory),
            'org.firmament.time-limit-ms': String(meta.timeLimitMs),
            'org.firmament.devices': meta.devices.join(','),
          },
        },
        rootfs: { type: 'layers', diff_ids: [c.layerDigest] },
      });
    }
    const uart = await loadContainerMeta('uart');
    expect(uart.devices).toEqual(['port:0x3f8-0x3ff']);
    expect((await loadContainerMeta('cmos')).devices).toEqual(['port:0x70-0x71']);
    expect((await loadContainerMeta('memtest')).devices).toEqual(['ram-test']);
    expect((await loadContainerMeta('fwcfg')).devices).toEqual(['fwcfg']);
  });

  it('layers are ustar archives with only container.elf (0755, uid/gid 0, mtime 0) = the built ELF', async () => {
    const { containers: elfs } = await buildOs({ quiet: true });
    for (const c of built.containers) {
      const ents = readTar(readFileSync(path.join(layout, 'blobs/sha256', c.layerDigest.slice(7))));
      expect(ents.map((e) => [e.name, e.mode, e.uid, e.gid, e.mtime, e.type, e.checksumOk])).toEqual([['container.elf', 0o755, 0, 0, 0, '0', true]]);
      expect(ents[0]!.magic).toBe('ustar\0');
      expect(Buffer.compare(ents[0]!.data, readFileSync(elfs[c.name]!))).toBe(0);
    }
    // GNU tar agrees
    const tarFile = path.join(tmp, 'x.tar');
    writeFileSync(tarFile, makeTar('container.elf', Buffer.from('hello')));
    const list = spawnSync('tar', ['-tvf', tarFile], { encoding: 'utf8' });
    expect(list.status).toBe(0);
    expect(list.stdout).toMatch(/^-rwxr-xr-x 0\/0 +5 1970-01-01 00:00 container\.elf$/m);
  });

  it('the default set excludes test-only containers (container.json "default": false)', async () => {
    expect(await defaultContainers()).toEqual(['cmos', 'fwcfg', 'memtest', 'timer', 'uart']);
    for (const t of ['testonly-spin', 'testonly-wild', 'testonly-port', 'testonly-fence']) expect((await loadContainerMeta(t)).default).toBe(false);
  });

  it('is reproducible: same sources give byte-identical ELFs, blobs and index, wherever they are built', async () => {
    const a = await buildOs({ quiet: true });
    expect((await buildOs({ quiet: true })).built).toBe(false);      // stamp: nothing to do
    const b = await buildOs({ quiet: true, force: true, outDir: path.join(tmp, 'build-b') });
    expect(b.osSha256).toBe(a.osSha256);
    expect(b.containerSha256).toEqual(a.containerSha256);
    const again = await buildOciLayout({ quiet: true, force: true, layoutDir: path.join(tmp, 'layout-b') });
    expect(again.containers).toEqual(built.containers);
    expect(readFileSync(path.join(again.layoutDir, 'index.json'))).toEqual(readFileSync(path.join(layout, 'index.json')));
    for (const f of readdirSync(path.join(layout, 'blobs/sha256'))) {
      expect(sha256(readFileSync(path.join(again.layoutDir, 'blobs/sha256', f)))).toBe(f);
    }
    // a second call is skipped (content already there)
    expect((await buildOciLayout({ quiet: true, layoutDir: again.layoutDir })).built).toBe(false);
  }, 120_000);

  it('selected containers: any subset, always sorted by name', async () => {
    const l = await buildOciLayout({ quiet: true, layoutDir: path.join(tmp, 'subset'), containers: ['uart', 'testonly-spin'] });
    expect(l.containers.map((c) => c.name)).toEqual(['testonly-spin', 'uart']);
    expect(checkLayout(l.layoutDir)).toEqual([]);
    await expect(buildOciLayout({ quiet: true, layoutDir: path.join(tmp, 'nope'), containers: ['nope'] })).rejects.toThrow(/no container "nope"/);
  });
});

describe('fw_cfg contract (layoutToFwCfgFiles)', () => {
  it('index.json as opt/fm/oci/index.json and every blob as opt/fm/blob/<first 40 hex of its sha256>', () => {
    const files = layoutToFwCfgFiles(layout);
    expect(files[0]!.name < files[1]!.name).toBe(true);
    const idx = files.find((f) => f.name === FWCFG_INDEX)!;
    expect(Buffer.compare(idx.data, readFileSync(path.join(layout, 'index.json')))).toBe(0);
    const blobs = files.filter((f) => f.name.startsWith(FWCFG_BLOB_PREFIX));
    expect(blobs.length).toBe(15);
    expect(files.length).toBe(16);
    for (const f of files) expect(f.name.length).toBeLessThanOrEqual(55);
    for (const b of blobs) {
      const hex40 = b.name.slice(FWCFG_BLOB_PREFIX.length);
      expect(hex40).toMatch(/^[0-9a-f]{40}$/);
      expect(sha256(b.data).slice(0, 40)).toBe(hex40);
    }
    const names = new Set(blobs.map((b) => b.name));
    for (const c of built.containers) {
      for (const d of [c.manifestDigest, c.configDigest, c.layerDigest]) expect(names.has(`${FWCFG_BLOB_PREFIX}${d.slice(7, 47)}`)).toBe(true);
    }
  });

  it('corruptLayout flips one byte of one blob, keeps its name; checkLayout and the file contract show it', async () => {
    const uart = built.containers.find((c) => c.name === 'uart')!;
    const bad = await corruptLayout({ layoutDir: layout, outDir: path.join(tmp, 'bad'), container: 'uart', blob: 'config', offset: 3 });
    expect(bad.digest).toBe(uart.configDigest);
    const problems = checkLayout(bad.layoutDir);
    expect(problems[0]).toMatch(new RegExp(`config: blob ${uart.configDigest} hashes to sha256:[0-9a-f]{64}`));
    const f = layoutToFwCfgFiles(bad.layoutDir).find((x) => x.name === `${FWCFG_BLOB_PREFIX}${uart.configDigest.slice(7, 47)}`)!;
    expect(sha256(f.data).slice(0, 40)).not.toBe(uart.configDigest.slice(7, 47));
    expect(checkLayout(layout)).toEqual([]);                // the original is untouched
  });
});

describe('container metadata validation', () => {
  it('rejects grants that cover ports no container may have', async () => {
    const { FORBIDDEN_PORTS } = await import('../../tools/oci-layout.mjs');
    expect(FORBIDDEN_PORTS.some(([a, b]) => a <= 0x20 && b >= 0x20)).toBe(true);  // PIC
    expect(FORBIDDEN_PORTS.some(([a, b]) => a <= 0x518 && b >= 0x518)).toBe(true); // fw_cfg DMA
    expect(FORBIDDEN_PORTS.some(([a, b]) => a <= 0xf4 && b >= 0xf4)).toBe(true);  // isa-debug-exit
  });
});

// ---------------------------------------------------------------- registry

describe.skipIf(!canRunRegistry)('registry round trip (skopeo + docker-registry)', () => {
  let reg: LoopbackRegistry | undefined;
  let port = 0;
  beforeAll(async () => {
    reg = await startRegistry();
    port = reg.port;
  }, 30_000);
  afterAll(() => {
    reg?.stop();
  });

  it('skopeo copies an image to the registry (digests preserved) and back into an OCI layout', async () => {
    const timer = built.containers.find((c) => c.name === 'timer')!;
    const dest = `docker://127.0.0.1:${port}/firmament/timer:test`;
    const push = await run('skopeo', ['copy', '--dest-tls-verify=false', '--preserve-digests', `oci:${layout}:timer`, dest]);
    expect(push.out).toContain('Writing manifest to image destination');
    expect(push.code).toBe(0);
    const raw = await run('skopeo', ['inspect', '--tls-verify=false', '--raw', dest]);
    expect(raw.code).toBe(0);
    expect(`sha256:${sha256(raw.out)}`).toBe(timer.manifestDigest);
    const back = path.join(tmp, 'pulled');
    const pull = await run('skopeo', ['copy', '--src-tls-verify=false', '--preserve-digests', '--dest-oci-accept-uncompressed-layers', dest, `oci:${back}:timer`]);
    expect(pull.code).toBe(0);
    expect(existsSync(path.join(back, 'blobs/sha256', timer.layerDigest.slice(7)))).toBe(true);
    const idx = JSON.parse(readFileSync(path.join(back, 'index.json'), 'utf8'));
    expect(idx.manifests[0].digest).toBe(timer.manifestDigest);
  }, 60_000);
});
