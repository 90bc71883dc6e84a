#!/usr/bin/env node
// Builds the example functions of the function service (guests/functions/*.c)
// into static x86-64 user ELFs under images/build/functions/ (docs/functions.md).
//
//   node tools/build-functions.mjs [--force] [--out DIR]
//
// API: buildFunctions({ force?, outDir? }) -> Promise<Record<name, absolute ELF path>>
// Reproducible like the guests (tools/build-guests.mjs): fixed flags, relative
// source paths, -ffile-prefix-map, no build id; incremental through a stamp of
// the inputs' hash per function.
import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { compileAll, fileSha, inputHasher, KIT_FILE, listFiles, publish, readStamp, run as runTool, toolEnv, toolFailure, toolVersions, withTempDir, writeStamp } from './lib/build-kit.mjs';

const SCRIPT = fileURLToPath(import.meta.url);
const REPO_ROOT = path.resolve(path.dirname(SCRIPT), '..');
export const DEFAULT_FUNCTIONS_DIR = path.join(REPO_ROOT, 'images', 'build', 'functions');
const SRC_DIR = 'guests/functions';
const LIB_DIR = 'guests/functions/lib';

const CFLAGS = [
  '-std=gnu11', '-O2', '-m64', '-ffreestanding', '-fno-pic', '-fno-pie', '-fno-stack-protector', '-fno-asynchronous-unwind-tables',
  '-fno-unwind-tables', '-fno-tree-loop-distribute-patterns', '-fno-common', '-fcf-protection=none', '-mgeneral-regs-only',
  '-Wall', '-Wextra', '-Werror', `-I${LIB_DIR}`,
];
const LDFLAGS = ['-m', 'elf_x86_64', '-nostdlib', '-static', '--build-id=none', '-z', 'max-page-size=0x1000', '-z', 'noexecstack', '-T', `${LIB_DIR}/user.ld`];

const fail = toolFailure('build-functions', 'FunctionBuildError');
const runner = (cmd, args, what) => runTool(cmd, args, what, { cwd: REPO_ROOT, env: toolEnv(), fail });

/** Function names: every guests/functions/<name>.c. */
export async function functionNames() {
  return (await fs.readdir(path.join(REPO_ROOT, SRC_DIR))).filter((f) => f.endsWith('.c')).map((f) => f.slice(0, -2)).sort();
}

async function buildOne(name, outDir, force, tools) {
  const libFiles = await listFiles(REPO_ROOT, LIB_DIR);
  const src = `${SRC_DIR}/${name}.c`;
  const h = inputHasher().add('builder', await fs.readFile(SCRIPT)).add('kit', await fs.readFile(KIT_FILE)).add('tools', JSON.stringify(tools)).add('flags', JSON.stringify([CFLAGS, LDFLAGS]));
  await h.addFiles(REPO_ROOT, [...libFiles, src]);
  const hash = h.digest();
  const out = path.join(outDir, `${name}.elf`);
  const stampPath = path.join(outDir, '.stamps', `${name}.json`);
  const stamp = await readStamp(stampPath);
  if (!force && stamp?.inputHash === hash && (await fileSha(out)) === stamp.sha256) return out;
  return withTempDir(outDir, `.tmp-${name}-`, async (tmp) => {
    const objects = await compileAll([`${LIB_DIR}/crt0.S`, src], {
      objDir: tmp, run: runner, cflags: [...CFLAGS, `-ffile-prefix-map=${REPO_ROOT}/=`, `-ffile-prefix-map=${REPO_ROOT}=.`], jobs: 1,
      objName: (s) => `${s.replace(/\//g, '__').replace(/\.[cS]$/, '')}.o`, what: (s) => `compiling ${s} for function ${name}`,
    });
    const elf = path.join(tmp, `${name}.elf`);
    await runner('ld', [...LDFLAGS, '-o', elf, ...objects], `linking function ${name}`);
    await runner('strip', ['--strip-all', elf], `stripping function ${name}`);
    const digest = await publish(elf, out);
    await fs.mkdir(path.dirname(stampPath), { recursive: true });
    await writeStamp(stampPath, { function: name, inputHash: hash, sha256: digest }, tmp);
    return out;
  });
}

/** @param {{ force?: boolean, outDir?: string }} [options] @returns {Promise<Record<string, string>>} */
export async function buildFunctions(options = {}) {
  const outDir = path.resolve(options.outDir ?? DEFAULT_FUNCTIONS_DIR);
  await fs.mkdir(outDir, { recursive: true });
  const tools = await toolVersions(['gcc', 'ld', 'strip']);
  const result = {};
  for (const name of await functionNames()) result[name] = await buildOne(name, outDir, options.force === true, tools);
  return result;
}

if (process.argv[1] && path.resolve(process.argv[1]) === SCRIPT) {
  const argv = process.argv.slice(2);
  const outIdx = argv.indexOf('--out');
  buildFunctions({ force: argv.includes('--force'), ...(outIdx >= 0 ? { outDir: argv[outIdx + 1] } : {}) }).then(
    (r) => { for (const [n, p] of Object.entries(r)) console.log(`${n}: ${path.relative(process.cwd(), p)}`); },
    (e) => { console.error(e instanceof Error ? e.message : String(e)); process.exit(1); },
  );
}
