#!/usr/bin/env node
// Builds the Firmament lightweight OS (firmware/os/ -> images/build/os.elf,
// the firmware's next stage) and the diagnostic container executables
// (firmware/containers/<name>/ -> images/build/containers/<name>.elf).
//
//   node tools/build-os.mjs [--force] [--quiet]
//
// API: buildOs({ force?, quiet?, outDir? }) -> Promise<{ os, osSha256,
//   containers: Record<name, path>, containerSha256: Record<name, hex>, built }>
//
// Same rules as tools/build-firmware.mjs: reproducible (relative sources in
// sorted order, -ffile-prefix-map, no debug info, -fno-ident,
// --build-id=none, -Wdate-time -Werror, LC_ALL=C), skipped when the stamp's
// content hash of every input (firmware/os/**, firmware/containers/**,
// firmware/lib/*, firmware/include/*, firmware/post-codes.json, the build
// scripts, tool versions) matches and
// every output still hashes to its recorded value; outputs are published by
// atomic rename, the stamp last.
import { $ } from 'zx';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadPostCodes, renderPostCodesHeader } from './build-firmware.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const DEFAULT_OUT_DIR = path.join(ROOT, 'images', 'build');
const SCRIPT_REL = 'tools/build-os.mjs';
const CONTAINERS_REL = 'firmware/containers';

const COMMON_CFLAGS = [
  '-m64', '-std=c11', '-O2', '-ffreestanding', '-fno-pic', '-fno-pie', '-mno-red-zone',
  '-mgeneral-regs-only', '-fno-stack-protector', '-fno-asynchronous-unwind-tables', '-fno-unwind-tables',
  '-fcf-protection=none', '-fno-common', '-fno-strict-aliasing', '-fno-tree-loop-distribute-patterns',
  '-fno-ident', '-Wall', '-Wextra', '-Werror', '-Wdate-time', '-Wno-address-of-packed-member',
];
/** The OS lives in the top 2 GiB (KERNEL_VMA); containers are plain small-model executables at 4 MiB. */
const OS_CFLAGS = [...COMMON_CFLAGS, '-mcmodel=kernel'];
const CONTAINER_CFLAGS = [...COMMON_CFLAGS, '-mcmodel=small'];
const ASFLAGS = ['-m64', '-Wa,--noexecstack', '-Werror'];
const LDFLAGS = ['-m', 'elf_x86_64', '-nostdlib', '-static', '--build-id=none', '--no-warn-rwx-segments',
  '-z', 'max-page-size=0x1000', '-z', 'noexecstack'];

const sha256 = (buf) => createHash('sha256').update(buf).digest('hex');

async function listFiles(relDir, exts, recursive = true) {
  const abs = path.join(ROOT, relDir);
  if (!existsSync(abs)) return [];
  const out = [];
  for (const ent of await fsp.readdir(abs, { withFileTypes: true })) {
    const rel = `${relDir}/${ent.name}`;
    if (ent.isDirectory()) {
      if (recursive) out.push(...(await listFiles(rel, exts, true)));
    } else if (ent.isFile() && (!exts || exts.some((e) => ent.name.endsWith(e)))) {
      out.push(rel);
    }
  }
  return out.sort();
}

/** Container directories: firmware/containers/<name>/ holding a container.json. Sorted by name. */
export async function containerNames() {
  const abs = path.join(ROOT, CONTAINERS_REL);
  const names = [];
  for (const ent of await fsp.readdir(abs, { withFileTypes: true })) {
    if (ent.isDirectory() && existsSync(path.join(abs, ent.name, 'container.json'))) names.push(ent.name);
  }
  return names.sort();
}

async function toolchainId() {
  const q = $({ cwd: ROOT, quiet: true });
  const gcc = (await q`gcc --version`).stdout.split('\n')[0];
  const ld = (await q`ld --version`).stdout.split('\n')[0];
  return `${gcc}\n${ld}`;
}

async function inputsHash() {
  const files = [
    ...(await listFiles('firmware/os', null)),
    ...(await listFiles(CONTAINERS_REL, null)),
    ...(await listFiles('firmware/lib', null)),
    ...(await listFiles('firmware/include', null)),
    'firmware/post-codes.json',
    'tools/build-firmware.mjs',
    SCRIPT_REL,
  ].sort();
  const h = createHash('sha256');
  for (const f of files) {
    h.update(`${f}\0`);
    h.update(await fsp.readFile(path.join(ROOT, f)));
    h.update('\0');
  }
  h.update(await toolchainId());
  return h.digest('hex');
}

function toolEnv() {
  const env = { ...process.env, LC_ALL: 'C', LANG: 'C', TZ: 'UTC' };
  for (const k of ['SOURCE_DATE_EPOCH', 'GCC_EXEC_PREFIX', 'COMPILER_PATH', 'CPATH', 'C_INCLUDE_PATH']) delete env[k];
  return env;
}

async function run(cmd, args, what) {
  try {
    return await $({ cwd: ROOT, quiet: true, env: toolEnv() })`${cmd} ${args}`;
  } catch (e) {
    const out = e && typeof e === 'object' && 'stderr' in e ? `${e.stdout ?? ''}${e.stderr ?? ''}` : String(e);
    const err = new Error(`build-os: ${what} failed:\n${out.trimEnd()}`);
    err.name = 'OsBuildError';
    throw err;
  }
}

async function mapLimit(items, limit, fn) {
  const results = new Array(items.length);
  let next = 0;
  const workers = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i], i);
    }
  });
  await Promise.all(workers);
  return results;
}

async function compileAll(sources, objDir, cflags, includeDirs, prefixMaps) {
  await fsp.mkdir(objDir, { recursive: true });
  const inc = includeDirs.flatMap((d) => ['-I', d]);
  return mapLimit(sources, Math.max(1, os.cpus().length), async (s) => {
    const obj = path.join(objDir, `${s.replace(/^firmware\//, '').replace(/[/.]/g, '_')}.o`);
    const flags = s.endsWith('.S') ? [...ASFLAGS, ...prefixMaps, ...inc] : [...cflags, ...prefixMaps, ...inc];
    await run('gcc', [...flags, '-c', s, '-o', obj], `compiling ${s}`);
    return obj;
  });
}

async function readStamp(file) {
  try {
    return JSON.parse(await fsp.readFile(file, 'utf8'));
  } catch {
    return null;
  }
}

async function fileSha(file) {
  try {
    return sha256(await fsp.readFile(file));
  } catch {
    return null;
  }
}

/**
 * Build os.elf and every container ELF (or reuse them when the stamp says they are current).
 * @param {{ force?: boolean, quiet?: boolean, outDir?: string }} [opts]
 * @returns {Promise<{ os: string, osSha256: string, containers: Record<string, string>, containerSha256: Record<string, string>, built: boolean }>}
 */
export async function buildOs(opts = {}) {
  const force = opts.force === true;
  const outDir = path.resolve(opts.outDir ?? DEFAULT_OUT_DIR);
  const log = opts.quiet ? () => {} : (m) => process.stderr.write(`${m}\n`);
  const osElf = path.join(outDir, 'os.elf');
  const cDir = path.join(outDir, 'containers');
  const stampFile = path.join(outDir, 'os.stamp.json');
  const names = await containerNames();
  const paths = Object.fromEntries(names.map((n) => [n, path.join(cDir, `${n}.elf`)]));

  const hash = await inputsHash();
  if (!force) {
    const stamp = await readStamp(stampFile);
    if (stamp && stamp.inputs === hash && stamp.containers && Object.keys(stamp.containers).sort().join() === names.join()) {
      const osSha = await fileSha(osElf);
      const shas = Object.fromEntries(await Promise.all(names.map(async (n) => [n, await fileSha(paths[n])])));
      if (osSha === stamp.os && names.every((n) => shas[n] && shas[n] === stamp.containers[n])) {
        log(`build-os: up to date (${path.relative(ROOT, osElf)}, ${names.length} containers)`);
        return { os: osElf, osSha256: osSha, containers: paths, containerSha256: shas, built: false };
      }
    }
  }

  await fsp.mkdir(cDir, { recursive: true });
  const tmp = await fsp.mkdtemp(path.join(outDir, '.tmp-os-'));
  try {
    const prefixMaps = [`-ffile-prefix-map=${tmp}=BUILD`, `-ffile-prefix-map=${ROOT}=.`];
    const gen = path.join(tmp, 'gen');
    await fsp.mkdir(gen, { recursive: true });
    await fsp.writeFile(path.join(gen, 'post_codes.h'), renderPostCodesHeader(loadPostCodes()));
    const libC = await listFiles('firmware/lib', ['.c'], false);

    // The OS.
    const osSrcs = [
      ...(await listFiles('firmware/os/arch', ['.S', '.c'])),
      ...(await listFiles('firmware/os/kernel', ['.S', '.c'])),
      ...libC,
    ];
    const osObjs = await compileAll(osSrcs, path.join(tmp, 'obj', 'os'), OS_CFLAGS,
      ['firmware/os/include', 'firmware/include', gen], prefixMaps);
    const osTmp = path.join(tmp, 'os.elf');
    await run('ld', [...LDFLAGS, '-T', 'firmware/os/link/os.ld', '-o', osTmp, ...osObjs], 'linking os.elf');

    // The containers: their own top-level sources + the runtime + the shared freestanding lib.
    const rt = await listFiles(`${CONTAINERS_REL}/lib`, ['.S', '.c'], false);
    const built = {};
    for (const n of names) {
      const own = await listFiles(`${CONTAINERS_REL}/${n}`, ['.S', '.c'], false);
      if (!own.length) throw new Error(`build-os: ${CONTAINERS_REL}/${n} has no .c/.S sources`);
      const objs = await compileAll([...own, ...rt, ...libC], path.join(tmp, 'obj', n), CONTAINER_CFLAGS,
        [`${CONTAINERS_REL}/lib`, `${CONTAINERS_REL}/${n}`, 'firmware/os/include', 'firmware/include'], prefixMaps);
      const out = path.join(tmp, `${n}.elf`);
      await run('ld', [...LDFLAGS, '-T', `${CONTAINERS_REL}/lib/container.ld`, '-o', out, ...objs], `linking ${n}.elf`);
      built[n] = out;
    }

    const containerSha256 = {};
    for (const n of names) {
      containerSha256[n] = sha256(await fsp.readFile(built[n]));
      await fsp.rename(built[n], paths[n]);
    }
    const osSha256 = sha256(await fsp.readFile(osTmp));
    await fsp.rename(osTmp, osElf);
    const stampTmp = path.join(tmp, 'stamp.json');
    await fsp.writeFile(stampTmp, `${JSON.stringify({ inputs: hash, os: osSha256, containers: containerSha256 }, null, 2)}\n`);
    await fsp.rename(stampTmp, stampFile);
    log(`build-os: built ${path.relative(ROOT, osElf)} (sha256 ${osSha256})`);
    for (const n of names) log(`build-os: built ${path.relative(ROOT, paths[n])} (sha256 ${containerSha256[n]})`);
    return { os: osElf, osSha256, containers: paths, containerSha256, built: true };
  } finally {
    await fsp.rm(tmp, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------- CLI

const isMain = process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url);
if (isMain) {
  const args = new Set(process.argv.slice(2));
  const known = new Set(['--force', '--quiet', '--help']);
  const unknown = [...args].filter((a) => !known.has(a));
  if (unknown.length || args.has('--help')) {
    process.stderr.write('usage: node tools/build-os.mjs [--force] [--quiet]\n');
    process.exit(unknown.length ? 2 : 0);
  }
  try {
    await buildOs({ force: args.has('--force'), quiet: args.has('--quiet') });
  } catch (e) {
    process.stderr.write(`${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(1);
  }
}
