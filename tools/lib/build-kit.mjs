// Shared pieces of the reproducible builders (tools/build-firmware.mjs,
// tools/build-os.mjs, tools/build-guests.mjs): listing inputs in a fixed
// order, hashing them for the stamps, running the toolchain with a clear
// error, compiling in parallel, and publishing outputs by atomic rename.
//
// The builders hash this file into their stamps too, so a change here
// rebuilds everything that depends on it.
import { $ } from 'zx';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** Absolute path of this file (hashed into the builders' stamps). */
export const KIT_FILE = fileURLToPath(import.meta.url);
/** This file relative to the repository root. */
export const KIT_REL = 'tools/lib/build-kit.mjs';
const REPO_ROOT = path.resolve(path.dirname(KIT_FILE), '../..');

/**
 * @typedef {{ stdout: string, stderr: string, exitCode: number | null }} ToolOutput
 * @typedef {(cmd: string, args: string[], what: string) => Promise<ToolOutput>} Runner
 *   Runs `cmd args` for the step described by `what` (used in error messages).
 */

/** @param {string | Uint8Array} data @returns {string} lowercase hex sha256 */
export const sha256 = (data) => createHash('sha256').update(data).digest('hex');

/** sha256 of a file's bytes, or null when it cannot be read (missing, ...). @param {string} file @returns {Promise<string | null>} */
export async function fileSha(file) {
  try {
    return sha256(await fsp.readFile(file));
  } catch {
    return null;
  }
}

/** A stamp file's JSON, or null when it is missing or unreadable. @param {string} file @returns {Promise<any>} */
export async function readStamp(file) {
  try {
    return JSON.parse(await fsp.readFile(file, 'utf8'));
  } catch {
    return null;
  }
}

/**
 * Files under root/relDir as '/'-separated paths relative to root, sorted
 * (code-unit order). A missing directory gives [].
 * @param {string} root
 * @param {string} relDir
 * @param {{ exts?: string[] | null, recursive?: boolean, skipDirs?: ReadonlySet<string> }} [opts]
 *   exts: keep only names ending in one of these (default: every file);
 *   recursive: descend into subdirectories (default true);
 *   skipDirs: relative directory paths never descended into.
 * @returns {Promise<string[]>}
 */
export async function listFiles(root, relDir, opts = {}) {
  const { exts = null, recursive = true, skipDirs } = opts;
  const abs = path.join(root, relDir);
  if (!existsSync(abs)) return [];
  /** @type {string[]} */
  const out = [];
  for (const ent of await fsp.readdir(abs, { withFileTypes: true })) {
    const rel = `${relDir}/${ent.name}`;
    if (ent.isDirectory()) {
      if (recursive && !skipDirs?.has(rel)) out.push(...(await listFiles(root, rel, opts)));
    } else if (ent.isFile() && (!exts || exts.some((e) => ent.name.endsWith(e)))) {
      out.push(rel);
    }
  }
  return out.sort();
}

/**
 * Content hash of a build's inputs, for its stamp: a sequence of labelled,
 * length-framed records (`label\0length\0data`), so neither names nor
 * contents can run into each other.
 */
export function inputHasher() {
  const h = createHash('sha256');
  const hasher = {
    /** @param {string} label @param {string | Uint8Array} data */
    add(label, data) {
      h.update(`${label}\0${data.length}\0`);
      h.update(data);
      return hasher;
    },
    /** Add root/rel under the label `file:<rel>`. @param {string} root @param {string} rel */
    async addFile(root, rel) {
      return hasher.add(`file:${rel}`, await fsp.readFile(path.join(root, rel)));
    },
    /** Add each file, in the order given. @param {string} root @param {string[]} rels */
    async addFiles(root, rels) {
      for (const rel of rels) await hasher.addFile(root, rel);
      return hasher;
    },
    /** @returns {string} */
    digest: () => h.digest('hex'),
  };
  return hasher;
}

/**
 * The environment for gcc/ld/objcopy: C locale, UTC, and none of the
 * variables that would change what the toolchain does or embeds.
 * @returns {NodeJS.ProcessEnv}
 */
export function toolEnv() {
  /** @type {NodeJS.ProcessEnv} */
  const env = { ...process.env, LC_ALL: 'C', LANG: 'C', TZ: 'UTC' };
  for (const k of ['SOURCE_DATE_EPOCH', 'GCC_EXEC_PREFIX', 'COMPILER_PATH', 'CPATH', 'C_INCLUDE_PATH']) delete env[k];
  return env;
}

/**
 * Run a tool quietly; when it fails (or cannot start), throw what `fail`
 * makes of the failure.
 * @param {string} cmd
 * @param {string[]} args
 * @param {string} what  the step, for the message
 * @param {{ cwd: string, env?: NodeJS.ProcessEnv, fail: (what: string, err: any, cmd: string, args: string[]) => Error }} opts
 *   env: default toolEnv()
 * @returns {Promise<ToolOutput>}
 */
export async function run(cmd, args, what, { cwd, env = toolEnv(), fail }) {
  try {
    return await $({ cwd, quiet: true, env })`${cmd} ${args}`;
  } catch (e) {
    throw fail(what, e, cmd, args);
  }
}

/**
 * The failure style of the firmware and OS builders:
 * `<tag>: <what> failed:\n<stdout><stderr>` in an Error named errorName.
 * @param {string} tag
 * @param {string} errorName
 * @returns {(what: string, err: any) => Error}
 */
export function toolFailure(tag, errorName) {
  return (what, e) => {
    const out = e && typeof e === 'object' && 'stderr' in e ? `${e.stdout ?? ''}${e.stderr ?? ''}` : String(e);
    const err = new Error(`${tag}: ${what} failed:\n${out.trimEnd()}`);
    err.name = errorName;
    return err;
  };
}

/**
 * First line of `<tool> --version` for each tool, keyed by tool, in order.
 * @param {string[]} tools
 * @param {Runner} [exec]  default: zx, quiet, in the repository root
 * @returns {Promise<Record<string, string>>}
 */
export async function toolVersions(tools, exec = (cmd, args) => $({ cwd: REPO_ROOT, quiet: true })`${cmd} ${args}`) {
  /** @type {Record<string, string>} */
  const versions = {};
  for (const tool of tools) {
    versions[tool] = (await exec(tool, ['--version'], `checking ${tool} (is the toolchain installed?)`)).stdout.split('\n')[0] ?? '';
  }
  return versions;
}

/**
 * fn over items with at most `limit` calls in flight; results in item order.
 * @template T, R
 * @param {T[]} items
 * @param {number} limit
 * @param {(item: T, index: number) => Promise<R>} fn
 * @returns {Promise<R[]>}
 */
export async function mapLimit(items, limit, fn) {
  /** @type {R[]} */
  const results = new Array(items.length);
  let next = 0;
  const workers = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(/** @type {T} */ (items[i]), i);
    }
  });
  await Promise.all(workers);
  return results;
}

/**
 * Default object file name for a source: the path below its top directory,
 * flattened ('firmware/os/arch/entry.S' -> 'os_arch_entry_S.o'). Object names
 * are part of the output bytes: ld records them as the STT_FILE symbols of
 * assembler objects, so they must stay stable.
 * @param {string} src
 * @returns {string}
 */
export const objectName = (src) => `${src.replace(/^[^/]*\//, '').replace(/[/.]/g, '_')}.o`;

/**
 * Compile .c/.S sources (paths relative to the runner's cwd) to objects in
 * objDir: `gcc <flags> <prefixMaps> -I<dirs> -c src -o obj`. Returns the
 * object paths in source order (the link order).
 * @param {string[]} sources
 * @param {object} o
 * @param {string} o.objDir
 * @param {Runner} o.run
 * @param {string[]} o.cflags  flags for .c (and for .S without asflags)
 * @param {string[]} [o.asflags]  flags for .S
 * @param {string[]} [o.includeDirs]
 * @param {string[]} [o.prefixMaps]
 * @param {(src: string) => string} [o.objName]  object file name in objDir (default objectName)
 * @param {(src: string) => string} [o.what]  step description (default `compiling <src>`)
 * @param {number} [o.jobs]  parallel compilers (default: one per CPU)
 * @returns {Promise<string[]>}
 */
export async function compileAll(sources, o) {
  const { objDir, run: exec, cflags, asflags = cflags, includeDirs = [], prefixMaps = [] } = o;
  const objName = o.objName ?? objectName;
  const what = o.what ?? ((src) => `compiling ${src}`);
  await fsp.mkdir(objDir, { recursive: true });
  const inc = includeDirs.flatMap((d) => ['-I', d]);
  return mapLimit(sources, o.jobs ?? Math.max(1, os.cpus().length), async (src) => {
    const obj = path.join(objDir, objName(src));
    const flags = src.endsWith('.S') ? asflags : cflags;
    await exec('gcc', [...flags, ...prefixMaps, ...inc, '-c', src, '-o', obj], what(src));
    return obj;
  });
}

/**
 * Run fn with a fresh temporary directory `<parent>/<prefix>XXXXXX` (on the
 * outputs' filesystem, so renames out of it are atomic); removed afterwards.
 * @template R
 * @param {string} parent
 * @param {string} prefix
 * @param {(tmp: string) => Promise<R>} fn
 * @returns {Promise<R>}
 */
export async function withTempDir(parent, prefix, fn) {
  const tmp = await fsp.mkdtemp(path.join(parent, prefix));
  try {
    return await fn(tmp);
  } finally {
    await fsp.rm(tmp, { recursive: true, force: true });
  }
}

/** Move a finished output into place atomically; returns its sha256. @param {string} src @param {string} dest @returns {Promise<string>} */
export async function publish(src, dest) {
  const digest = sha256(await fsp.readFile(src));
  await fsp.rename(src, dest);
  return digest;
}

/**
 * Write a stamp (pretty JSON and a newline) atomically: into tmpDir first,
 * then renamed onto file. Publish it last, after the outputs it describes.
 * @param {string} file
 * @param {unknown} data
 * @param {string} tmpDir  a directory on file's filesystem
 */
export async function writeStamp(file, data, tmpDir) {
  const tmp = path.join(tmpDir, 'stamp.json');
  await fsp.writeFile(tmp, `${JSON.stringify(data, null, 2)}\n`);
  await fsp.rename(tmp, file);
}
