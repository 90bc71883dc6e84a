#!/usr/bin/env node
// Packs the Firmament diagnostic containers (firmware/containers/<name>/,
// built by tools/build-os.mjs) into an OCI image layout, by default
// images/oci/firmament/, and maps a layout onto fw_cfg files for the OS.
//
//   node tools/oci-layout.mjs [--force] [--quiet] [--all] [--out DIR] [--check DIR]
//
// Layout (OCI image-layout 1.0.0, docs/containers.md):
//   oci-layout   {"imageLayoutVersion":"1.0.0"}
//   index.json   image index, one manifest descriptor per container sorted by
//                name, annotation org.opencontainers.image.ref.name = name
//   blobs/sha256/<hex>  manifests, configs, layers (uncompressed ustar holding
//                only container.elf, mode 0755, uid/gid 0, mtime 0)
// Reproducible: the same ELFs and container.json give byte-identical blobs,
// digests and index.json (compact JSON in a fixed key order, no timestamps).
//
// fw_cfg contract (layoutToFwCfgFiles; the TypeScript machine serves the
// same files): opt/fm/oci/index.json = index.json bytes; every blob as
// opt/fm/blob/<first 40 hex digits of its sha256>.
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
// Loaded when building: build-os pulls in zx (~0.2-0.4 s), which a boot reading the layout never needs.
const buildOsModule = () => import('./build-os.mjs');
const containerNames = async () => (await buildOsModule()).containerNames();

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const DEFAULT_LAYOUT_DIR = path.join(ROOT, 'images', 'oci', 'firmament');
const CONTAINERS_DIR = path.join(ROOT, 'firmware', 'containers');

export const MT_INDEX = 'application/vnd.oci.image.index.v1+json';
export const MT_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
export const MT_CONFIG = 'application/vnd.oci.image.config.v1+json';
export const MT_LAYER = 'application/vnd.oci.image.layer.v1.tar';
export const REF_NAME = 'org.opencontainers.image.ref.name';

const sha256 = (buf) => createHash('sha256').update(buf).digest('hex');

// ---------------------------------------------------------------- metadata

const GRANT_RE = /^(ram-test|fwcfg|port:0x[0-9a-fA-F]{1,4}(-0x[0-9a-fA-F]{1,4})?)$/;
/** Ports no grant may cover (the OS rejects such an image too; see docs/containers.md). */
export const FORBIDDEN_PORTS = Object.freeze([
  [0x20, 0x21], [0xa0, 0xa1], [0x43, 0x43], [0x92, 0x92], [0xf4, 0xf7], [0x514, 0x51b], [0xcf8, 0xcff],
]);

function checkGrant(g, where) {
  const m = /^port:(0x[0-9a-f]+)(?:-(0x[0-9a-f]+))?$/i.exec(g);
  if (!m) return;
  const lo = Number(m[1]);
  const hi = m[2] ? Number(m[2]) : lo;
  if (hi < lo) throw new Error(`${where}: grant ${g}: range is reversed`);
  const bad = FORBIDDEN_PORTS.find(([a, b]) => lo <= b && hi >= a);
  if (bad) throw new Error(`${where}: grant ${g} covers forbidden ports 0x${bad[0].toString(16)}-0x${bad[1].toString(16)}`);
}

/**
 * Read and validate firmware/containers/<name>/container.json.
 * @returns {Promise<{ name: string, purpose: string, memory: number, timeLimitMs: number, devices: string[], default: boolean }>}
 */
export async function loadContainerMeta(name) {
  const file = path.join(CONTAINERS_DIR, name, 'container.json');
  const where = `firmware/containers/${name}/container.json`;
  const m = JSON.parse(await fsp.readFile(file, 'utf8'));
  const known = new Set(['purpose', 'memory', 'timeLimitMs', 'devices', 'default', '$comment']);
  for (const k of Object.keys(m)) if (!known.has(k)) throw new Error(`${where}: unknown key "${k}"`);
  if (!/^[a-z0-9][a-z0-9._-]{0,30}$/.test(name)) throw new Error(`${where}: container name must match [a-z0-9][a-z0-9._-]{0,30}`);
  if (typeof m.purpose !== 'string' || !m.purpose || m.purpose.length > 63 || /[^\x20-\x7e]|["\\]/.test(m.purpose)) {
    throw new Error(`${where}: "purpose" must be 1-63 printable ASCII characters without quotes or backslashes`);
  }
  if (!Number.isInteger(m.memory) || m.memory < 65536 || m.memory > 268435456) throw new Error(`${where}: "memory" must be an integer 65536..268435456 (bytes)`);
  if (!Number.isInteger(m.timeLimitMs) || m.timeLimitMs < 1 || m.timeLimitMs > 600000) throw new Error(`${where}: "timeLimitMs" must be an integer 1..600000`);
  if (!Array.isArray(m.devices) || !m.devices.every((d) => typeof d === 'string' && GRANT_RE.test(d))) {
    throw new Error(`${where}: "devices" must be an array of grants: "port:0xA-0xB", "port:0xA", "ram-test", "fwcfg"`);
  }
  for (const g of m.devices) checkGrant(g, where);
  if (m.devices.filter((g) => g.startsWith('port:')).length + (m.devices.includes('fwcfg') ? 1 : 0) > 8) {
    throw new Error(`${where}: at most 8 port grants (fwcfg counts as one)`);
  }
  if (m.devices.join(',').length > 255) throw new Error(`${where}: "devices" joined must stay below 256 characters`);
  if (typeof m.default !== 'boolean') throw new Error(`${where}: "default" must be true or false`);
  return { name, purpose: m.purpose, memory: m.memory, timeLimitMs: m.timeLimitMs, devices: [...m.devices], default: m.default };
}

/** Names of the containers in the default set (container.json "default": true), sorted. */
export async function defaultContainers() {
  const out = [];
  for (const n of await containerNames()) if ((await loadContainerMeta(n)).default) out.push(n);
  return out;
}

// ---------------------------------------------------------------- tar

function octal(value, width) {
  // width includes the terminating NUL
  return `${value.toString(8).padStart(width - 1, '0')}\0`;
}

/** A ustar archive holding one regular file (mode 0755, uid/gid 0, mtime 0). */
export function makeTar(name, data) {
  if (Buffer.byteLength(name) > 99) throw new Error(`tar: name too long: ${name}`);
  const h = Buffer.alloc(512, 0);
  h.write(name, 0, 'utf8');
  h.write(octal(0o755, 8), 100, 'latin1');
  h.write(octal(0, 8), 108, 'latin1');
  h.write(octal(0, 8), 116, 'latin1');
  h.write(octal(data.length, 12), 124, 'latin1');
  h.write(octal(0, 12), 136, 'latin1');
  h.write('        ', 148, 'latin1');
  h.write('0', 156, 'latin1');
  h.write('ustar\0', 257, 'latin1');
  h.write('00', 263, 'latin1');
  h.write(octal(0, 8), 329, 'latin1');
  h.write(octal(0, 8), 337, 'latin1');
  let sum = 0;
  for (const b of h) sum += b;
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
  const pad = (512 - (data.length % 512)) % 512;
  return Buffer.concat([h, Buffer.from(data), Buffer.alloc(pad + 1024, 0)]);
}

/** Parse a ustar archive into its entries (for checks). */
export function readTar(buf) {
  const entries = [];
  let off = 0;
  while (off + 512 <= buf.length) {
    const h = buf.subarray(off, off + 512);
    if (h.every((b) => b === 0)) break;
    const str = (a, n) => h.subarray(a, a + n).toString('latin1').replace(/\0.*$/s, '');
    const num = (a, n) => parseInt(str(a, n).trim() || '0', 8);
    let sum = 0;
    for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 32 : h[i];
    const size = num(124, 12);
    entries.push({
      name: str(0, 100), mode: num(100, 8), uid: num(108, 8), gid: num(116, 8), size, mtime: num(136, 12),
      type: str(156, 1) || '0', magic: h.subarray(257, 263).toString('latin1'), checksumOk: sum === num(148, 8),
      data: buf.subarray(off + 512, off + 512 + size),
    });
    off += 512 + Math.ceil(size / 512) * 512;
  }
  return entries;
}

// ---------------------------------------------------------------- layout

/** The blobs and descriptors of one container image (pure function of its ELF and metadata). */
export function containerImage(meta, elf) {
  const layer = makeTar('container.elf', elf);
  const layerDigest = `sha256:${sha256(layer)}`;
  const config = Buffer.from(JSON.stringify({
    architecture: 'amd64',
    os: 'firmament',
    config: {
      Entrypoint: ['/container.elf'],
      Labels: {
        'org.firmament.name': meta.name,
        'org.firmament.purpose': meta.purpose,
        'org.firmament.memory': String(meta.memory),
        'org.firmament.time-limit-ms': String(meta.timeLimitMs),
        'org.firmament.devices': meta.devices.join(','),
      },
    },
    rootfs: { type: 'layers', diff_ids: [layerDigest] },
  }));
  const configDigest = `sha256:${sha256(config)}`;
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: MT_MANIFEST,
    config: { mediaType: MT_CONFIG, digest: configDigest, size: config.length },
    layers: [{ mediaType: MT_LAYER, digest: layerDigest, size: layer.length }],
  }));
  const manifestDigest = `sha256:${sha256(manifest)}`;
  return { name: meta.name, manifest, manifestDigest, config, configDigest, layer, layerDigest };
}

async function writeAtomic(file, data) {
  const tmp = `${file}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
  await fsp.writeFile(tmp, data);
  await fsp.rename(tmp, file);
}

/**
 * Build the OCI layout from the container ELFs (building them first via buildOs).
 * @param {{ force?: boolean, quiet?: boolean, layoutDir?: string, containers?: string[] }} [opts]
 *   containers: names to include (default: the default set); layoutDir: default images/oci/firmament.
 * @returns {Promise<{ layoutDir: string, built: boolean, containers: { name: string, manifestDigest: string, layerDigest: string, configDigest: string }[] }>}
 */
export async function buildOciLayout(opts = {}) {
  const layoutDir = path.resolve(opts.layoutDir ?? DEFAULT_LAYOUT_DIR);
  const log = opts.quiet ? () => {} : (m) => process.stderr.write(`${m}\n`);
  const names = [...new Set(opts.containers ?? (await defaultContainers()))].sort();
  const all = new Set(await containerNames());
  for (const n of names) if (!all.has(n)) throw new Error(`oci-layout: no container "${n}" in firmware/containers`);
  const { containers: elfs } = await (await buildOsModule()).buildOs({ quiet: opts.quiet });

  const images = [];
  for (const n of names) images.push(containerImage(await loadContainerMeta(n), await fsp.readFile(elfs[n])));
  const index = Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: MT_INDEX,
    manifests: images.map((im) => ({
      mediaType: MT_MANIFEST, digest: im.manifestDigest, size: im.manifest.length, annotations: { [REF_NAME]: im.name },
    })),
  }));
  const blobs = new Map();
  for (const im of images) for (const b of [im.manifest, im.config, im.layer]) blobs.set(sha256(b), b);
  const result = images.map((im) => ({ name: im.name, manifestDigest: im.manifestDigest, layerDigest: im.layerDigest, configDigest: im.configDigest }));

  const blobDir = path.join(layoutDir, 'blobs', 'sha256');
  const upToDate = !opts.force && existsSync(path.join(layoutDir, 'index.json')) &&
    readFileSync(path.join(layoutDir, 'index.json')).equals(index) &&
    existsSync(path.join(layoutDir, 'oci-layout')) &&
    [...blobs.keys()].every((h) => existsSync(path.join(blobDir, h)) && sha256(readFileSync(path.join(blobDir, h))) === h) &&
    readdirSync(blobDir).every((f) => blobs.has(f));
  if (upToDate) {
    log(`oci-layout: up to date (${path.relative(ROOT, layoutDir) || layoutDir}, ${names.length} containers)`);
    return { layoutDir, built: false, containers: result };
  }
  await fsp.mkdir(blobDir, { recursive: true });
  for (const [h, b] of blobs) await writeAtomic(path.join(blobDir, h), b);
  await writeAtomic(path.join(layoutDir, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
  await writeAtomic(path.join(layoutDir, 'index.json'), index);
  for (const f of await fsp.readdir(blobDir)) if (!blobs.has(f)) await fsp.rm(path.join(blobDir, f), { force: true });
  log(`oci-layout: wrote ${path.relative(ROOT, layoutDir) || layoutDir}: ${names.length} containers, ${blobs.size} blobs, index sha256:${sha256(index)}`);
  for (const r of result) log(`oci-layout:   ${r.name} ${r.manifestDigest}`);
  return { layoutDir, built: true, containers: result };
}

// ---------------------------------------------------------------- fw_cfg

// The layout-to-fw_cfg contract lives with the machine that serves it.
export { FWCFG_BLOB_PREFIX, FWCFG_INDEX, layoutToFwCfgFiles } from '../machine/platform/oci-fwcfg.mjs';

/**
 * Write fw_cfg files to dir and return the matching QEMU arguments
 * (-fw_cfg name=...,file=... for each). Names may not contain ','.
 * @param {{ name: string, data: Uint8Array }[]} files
 * @param {string} dir
 * @returns {Promise<string[]>}
 */
export async function writeFwCfgFiles(files, dir) {
  await fsp.mkdir(dir, { recursive: true });
  const args = [];
  for (const [i, f] of files.entries()) {
    if (f.name.length > 55 || f.name.includes(',')) throw new Error(`fw_cfg name not usable: ${f.name}`);
    const p = path.join(dir, `fwcfg-${String(i).padStart(3, '0')}.bin`);
    await fsp.writeFile(p, f.data);
    args.push('-fw_cfg', `name=${f.name},file=${p}`);
  }
  return args;
}

// ---------------------------------------------------------------- checks and test helpers

/**
 * Structural check of a layout: every descriptor's digest and size match the
 * blob, media types, one uncompressed layer with container.elf only, diff_ids,
 * labels, ref names sorted and unique. Returns the problems (empty = good).
 * @param {string} layoutDir
 * @returns {string[]}
 */
export function checkLayout(layoutDir) {
  const problems = [];
  const blobDir = path.join(layoutDir, 'blobs', 'sha256');
  const readBlob = (desc, what) => {
    const m = /^sha256:([0-9a-f]{64})$/.exec(desc?.digest ?? '');
    if (!m) { problems.push(`${what}: bad digest ${desc?.digest}`); return null; }
    const file = path.join(blobDir, m[1]);
    if (!existsSync(file)) { problems.push(`${what}: blob ${desc.digest} missing`); return null; }
    const b = readFileSync(file);
    if (sha256(b) !== m[1]) problems.push(`${what}: blob ${desc.digest} hashes to sha256:${sha256(b)}`);
    if (b.length !== desc.size) problems.push(`${what}: blob ${desc.digest} is ${b.length} bytes, descriptor says ${desc.size}`);
    return b;
  };
  try {
    const lay = JSON.parse(readFileSync(path.join(layoutDir, 'oci-layout'), 'utf8'));
    if (lay.imageLayoutVersion !== '1.0.0') problems.push('oci-layout: imageLayoutVersion is not 1.0.0');
  } catch (e) {
    problems.push(`oci-layout: ${e instanceof Error ? e.message : e}`);
  }
  let index;
  try {
    index = JSON.parse(readFileSync(path.join(layoutDir, 'index.json'), 'utf8'));
  } catch (e) {
    return [...problems, `index.json: ${e instanceof Error ? e.message : e}`];
  }
  if (index.schemaVersion !== 2) problems.push('index.json: schemaVersion is not 2');
  if (index.mediaType !== MT_INDEX) problems.push('index.json: mediaType is not the OCI index');
  const names = [];
  const referenced = new Set();
  for (const [i, d] of (index.manifests ?? []).entries()) {
    const name = d.annotations?.[REF_NAME];
    const what = `manifest ${i} (${name})`;
    if (typeof name !== 'string') problems.push(`${what}: no ${REF_NAME}`);
    names.push(name);
    if (d.mediaType !== MT_MANIFEST) problems.push(`${what}: mediaType ${d.mediaType}`);
    referenced.add(d.digest);
    const mb = readBlob(d, what);
    if (!mb) continue;
    const json = (b, w) => {
      try {
        return JSON.parse(b.toString('utf8'));
      } catch {
        problems.push(`${w}: not valid JSON`);
        return null;
      }
    };
    const man = json(mb, what);
    if (!man) continue;
    if (man.schemaVersion !== 2 || man.mediaType !== MT_MANIFEST) problems.push(`${what}: not an OCI v1 manifest`);
    if (man.config?.mediaType !== MT_CONFIG) problems.push(`${what}: config mediaType ${man.config?.mediaType}`);
    if (!Array.isArray(man.layers) || man.layers.length !== 1) { problems.push(`${what}: needs exactly one layer`); continue; }
    if (man.layers[0].mediaType !== MT_LAYER) problems.push(`${what}: layer mediaType ${man.layers[0].mediaType}`);
    referenced.add(man.config.digest);
    referenced.add(man.layers[0].digest);
    const cb = readBlob(man.config, `${what} config`);
    const lb = readBlob(man.layers[0], `${what} layer`);
    const cfg = cb && json(cb, `${what} config`);
    if (cfg) {
      if (cfg.architecture !== 'amd64' || cfg.os !== 'firmament') problems.push(`${what}: config architecture/os`);
      if (JSON.stringify(cfg.config?.Entrypoint) !== '["/container.elf"]') problems.push(`${what}: Entrypoint`);
      if (cfg.rootfs?.type !== 'layers' || JSON.stringify(cfg.rootfs?.diff_ids) !== JSON.stringify([man.layers[0].digest])) problems.push(`${what}: rootfs.diff_ids`);
      const L = cfg.config?.Labels ?? {};
      if (L['org.firmament.name'] !== name) problems.push(`${what}: label org.firmament.name`);
      for (const k of ['org.firmament.purpose', 'org.firmament.memory', 'org.firmament.time-limit-ms', 'org.firmament.devices']) {
        if (typeof L[k] !== 'string') problems.push(`${what}: label ${k} missing`);
      }
      if (/"(created|history)"/.test(cb.toString('utf8'))) problems.push(`${what}: config carries timestamps/history`);
    }
    if (lb) {
      const ents = readTar(lb);
      if (ents.length !== 1 || ents[0].name !== 'container.elf') problems.push(`${what}: layer must hold only container.elf`);
      for (const e of ents) {
        if (!e.checksumOk || !e.magic.startsWith('ustar')) problems.push(`${what}: layer tar header invalid`);
        if (e.mode !== 0o755 || e.uid !== 0 || e.gid !== 0 || e.mtime !== 0 || e.type !== '0') problems.push(`${what}: layer entry ${e.name} mode/uid/gid/mtime/type`);
        if (e.data.subarray(0, 4).toString('latin1') !== '\x7fELF') problems.push(`${what}: container.elf is not ELF`);
      }
    }
  }
  const sorted = [...names].sort();
  if (JSON.stringify(sorted) !== JSON.stringify(names)) problems.push('index.json: manifests not sorted by name');
  if (new Set(names).size !== names.length) problems.push('index.json: duplicate ref names');
  if (existsSync(blobDir)) {
    for (const f of readdirSync(blobDir)) if (!referenced.has(`sha256:${f}`)) problems.push(`blob sha256:${f} is not referenced`);
  }
  return problems;
}

/**
 * Copy a layout to outDir and flip one byte of one container's blob (the
 * file keeps its digest name, so the OS's verification must catch it).
 * @param {{ layoutDir: string, outDir: string, container: string, blob?: 'manifest'|'config'|'layer', offset?: number }} opts
 * @returns {Promise<{ layoutDir: string, digest: string, offset: number }>}
 */
export async function corruptLayout(opts) {
  await fsp.rm(opts.outDir, { recursive: true, force: true });
  await fsp.cp(opts.layoutDir, opts.outDir, { recursive: true });
  const index = JSON.parse(await fsp.readFile(path.join(opts.outDir, 'index.json'), 'utf8'));
  const d = index.manifests.find((m) => m.annotations?.[REF_NAME] === opts.container);
  if (!d) throw new Error(`corruptLayout: no container ${opts.container}`);
  const hexOf = (digest) => digest.replace(/^sha256:/, '');
  const blobDir = path.join(opts.outDir, 'blobs', 'sha256');
  let digest = d.digest;
  if (opts.blob && opts.blob !== 'manifest') {
    const man = JSON.parse(await fsp.readFile(path.join(blobDir, hexOf(d.digest)), 'utf8'));
    digest = opts.blob === 'config' ? man.config.digest : man.layers[0].digest;
  }
  const file = path.join(blobDir, hexOf(digest));
  const buf = await fsp.readFile(file);
  const offset = opts.offset ?? Math.floor(buf.length / 2);
  buf[offset] ^= 0xff;
  await fsp.writeFile(file, buf);
  return { layoutDir: opts.outDir, digest, offset };
}

// ---------------------------------------------------------------- CLI

const isMain = process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url);
if (isMain) {
  const argv = process.argv.slice(2);
  const flags = new Set(argv.filter((a) => a.startsWith('--')));
  const value = (f) => {
    const i = argv.indexOf(f);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const known = new Set(['--force', '--quiet', '--all', '--out', '--check', '--help']);
  const unknown = [...flags].filter((a) => !known.has(a));
  if (unknown.length || flags.has('--help')) {
    process.stderr.write('usage: node tools/oci-layout.mjs [--force] [--quiet] [--all] [--out DIR] | --check DIR\n');
    process.exit(unknown.length ? 2 : 0);
  }
  try {
    if (flags.has('--check')) {
      const problems = checkLayout(path.resolve(value('--check') ?? DEFAULT_LAYOUT_DIR));
      for (const p of problems) process.stderr.write(`${p}\n`);
      process.exit(problems.length ? 1 : 0);
    }
    await buildOciLayout({
      force: flags.has('--force'), quiet: flags.has('--quiet'),
      layoutDir: value('--out') ? path.resolve(value('--out')) : undefined,
      containers: flags.has('--all') ? await containerNames() : undefined,
    });
  } catch (e) {
    process.stderr.write(`${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(1);
  }
}
