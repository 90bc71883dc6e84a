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
// scripts and tools/lib/build-kit.mjs, tool versions) matches and
// every output still hashes to its recorded value; outputs are published by
// atomic rename, the stamp last.
import { existsSync } from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadPostCodes, renderPostCodesHeader } from './build-firmware.mjs';
import {
  compileAll, fileSha, inputHasher, KIT_REL, listFiles, publish, readStamp, run as runTool, toolFailure, toolVersions,
  withTempDir, writeStamp,
} from './lib/build-kit.mjs';

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

const run = (cmd, args, what) => runTool(cmd, args, what, { cwd: ROOT, fail: toolFailure('build-os', 'OsBuildError') });

/** Container directories: firmware/containers/<name>/ holding a container.json. Sorted by name. */
export async function containerNames() {
  const abs = path.join(ROOT, CONTAINERS_REL);
  const names = [];
  for (const ent of await fsp.readdir(abs, { withFileTypes: true })) {
    if (ent.isDirectory() && existsSync(path.join(abs, ent.name, 'container.json'))) names.push(ent.name);
  }
  return names.sort();
}

async function inputsHash() {
  const files = [
    ...(await listFiles(ROOT, 'firmware/os')),
    ...(await listFiles(ROOT, CONTAINERS_REL)),
    ...(await listFiles(ROOT, 'firmware/lib')),
    ...(await listFiles(ROOT, 'firmware/include')),
    'firmware/post-codes.json',
    'tools/build-firmware.mjs',
    SCRIPT_REL,
    KIT_REL,
  ].sort();
  const h = await inputHasher().addFiles(ROOT, files);
  h.add('tools', Object.values(await toolVersions(['gcc', 'ld'])).join('\n'));
  return h.digest();
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
  return withTempDir(outDir, '.tmp-os-', async (tmp) => {
    const prefixMaps = [`-ffile-prefix-map=${tmp}=BUILD`, `-ffile-prefix-map=${ROOT}=.`];
    const gen = path.join(tmp, 'gen');
    await fsp.mkdir(gen, { recursive: true });
    await fsp.writeFile(path.join(gen, 'post_codes.h'), renderPostCodesHeader(loadPostCodes()));
    const libC = await listFiles(ROOT, 'firmware/lib', { exts: ['.c'], recursive: false });
    const compile = (sources, objDir, cflags, includeDirs) =>
      compileAll(sources, { objDir, run, cflags, asflags: ASFLAGS, includeDirs, prefixMaps });

    // The OS.
    const osSrcs = [
      ...(await listFiles(ROOT, 'firmware/os/arch', { exts: ['.S', '.c'] })),
      ...(await listFiles(ROOT, 'firmware/os/kernel', { exts: ['.S', '.c'] })),
      ...libC,
    ];
    const osObjs = await compile(osSrcs, path.join(tmp, 'obj', 'os'), OS_CFLAGS, ['firmware/os/include', 'firmware/include', gen]);
    const osTmp = path.join(tmp, 'os.elf');
    await run('ld', [...LDFLAGS, '-T', 'firmware/os/link/os.ld', '-o', osTmp, ...osObjs], 'linking os.elf');

    // The containers: their own top-level sources + the runtime + the shared freestanding lib.
    const rt = await listFiles(ROOT, `${CONTAINERS_REL}/lib`, { exts: ['.S', '.c'], recursive: false });
    const built = {};
    for (const n of names) {
      const own = await listFiles(ROOT, `${CONTAINERS_REL}/${n}`, { exts: ['.S', '.c'], recursive: false });
      if (!own.length) throw new Error(`build-os: ${CONTAINERS_REL}/${n} has no .c/.S sources`);
      const objs = await compile([...own, ...rt, ...libC], path.join(tmp, 'obj', n), CONTAINER_CFLAGS,
        [`${CONTAINERS_REL}/lib`, `${CONTAINERS_REL}/${n}`, 'firmware/os/include', 'firmware/include']);
      const out = path.join(tmp, `${n}.elf`);
      await run('ld', [...LDFLAGS, '-T', `${CONTAINERS_REL}/lib/container.ld`, '-o', out, ...objs], `linking ${n}.elf`);
      built[n] = out;
    }

    // Publish atomically: containers, then the OS, the stamp last.
    const containerSha256 = {};
    for (const n of names) containerSha256[n] = await publish(built[n], paths[n]);
    const osSha256 = await publish(osTmp, osElf);
    await writeStamp(stampFile, { inputs: hash, os: osSha256, containers: containerSha256 }, tmp);
    log(`build-os: built ${path.relative(ROOT, osElf)} (sha256 ${osSha256})`);
    for (const n of names) log(`build-os: built ${path.relative(ROOT, paths[n])} (sha256 ${containerSha256[n]})`);
    return { os: osElf, osSha256, containers: paths, containerSha256, built: true };
  });
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
