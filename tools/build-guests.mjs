#!/usr/bin/env node
// Builds the Firmament test guests (guests/<name>/) into Multiboot v1 ELF
// images under images/build/guests/.
//
//   node tools/build-guests.mjs [--force] [--out DIR] [--root DIR]
//
// API: buildGuests({ force?, outDir?, root? }) -> Promise<Record<name, absolute ELF path>>
//   root: the tree holding guests/ (default: this repository); outDir
//   defaults to <repository>/images/build/guests.
//
// * Reproducible: fixed flags and link order, relative source paths,
//   -ffile-prefix-map, --build-id=none, no timestamps anywhere; the same
//   sources and toolchain give byte-identical ELFs wherever the repo lives.
// * Incremental: a guest is rebuilt only when the content hash of its inputs
//   (sources, headers, link script, this script and tools/lib/build-kit.mjs,
//   tool versions) changes; the hash is kept in <outDir>/.stamps/<name>.json.
// * 64-bit guests are linked as ELF64 (<name>.elf64, kept for symbols) and
//   converted with `objcopy -O elf32-i386` to <name>.elf, because QEMU's
//   Multiboot loader only takes ELF32. The program headers' physical
//   addresses survive the conversion.
import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  compileAll, fileSha, inputHasher, KIT_FILE, listFiles, publish, readStamp, run as runTool, toolVersions, withTempDir,
  writeStamp,
} from './lib/build-kit.mjs';

const SCRIPT = fileURLToPath(import.meta.url);
const REPO_ROOT = path.resolve(path.dirname(SCRIPT), '..');
export const DEFAULT_OUT_DIR = path.join(REPO_ROOT, 'images', 'build', 'guests');

/** Guest name -> target architecture. Sources: every .c/.S in guests/<name>/. */
export const GUESTS = Object.freeze({
  hello: 'i386',
  paging: 'x86_64',
  timer: 'x86_64',
  mwait: 'x86_64',
  smp: 'x86_64',
  dirtier: 'x86_64',
  compute: 'x86_64',
  scan: 'i386',
  crash: 'i386',
  hostile: 'x86_64',
  clone: 'x86_64',
  'function-runtime': 'x86_64',
  kvstore: 'x86_64',
  ipipong: 'x86_64',
  overcommit: 'x86_64',
  phases: 'x86_64',
  spin: 'x86_64',
  gateway: 'x86_64',
  'gateway-hostile': 'x86_64',
  sieve: 'x86_64',
  uptick: 'x86_64',
  tsccal: 'x86_64',
  selfipi: 'x86_64',
});

/** Guests that include another guest's sources (a second build of it): those files are part of their inputs. */
const INCLUDED_GUEST_DIRS = Object.freeze({ 'gateway-hostile': ['guests/gateway'] });

const COMMON_CFLAGS = [
  '-std=gnu11',
  '-O2',
  '-ffreestanding',
  '-fno-pic',
  '-fno-pie',
  '-fno-stack-protector',
  '-fno-asynchronous-unwind-tables',
  '-fno-unwind-tables',
  '-fno-tree-loop-distribute-patterns', // keep gcc from turning memcpy's loop into a memcpy call
  '-fno-common',
  '-fcf-protection=none',
  '-mgeneral-regs-only',
  '-Wall',
  '-Wextra',
  '-Werror',
  '-Iguests/lib/include',
];

const ARCH = {
  i386: {
    cflags: ['-m32', '-march=i686'],
    ldEmulation: 'elf_i386',
    linkScript: 'guests/lib/i386/kernel.ld',
  },
  x86_64: {
    cflags: ['-m64', '-mcmodel=kernel', '-mno-red-zone'],
    ldEmulation: 'elf_x86_64',
    linkScript: 'guests/lib/x86_64/kernel.ld',
  },
};

const LDFLAGS = [
  '-nostdlib',
  '-static',
  '--build-id=none',
  '-z',
  'max-page-size=0x1000',
  '-z',
  'noexecstack',
  '--no-warn-rwx-segments',
  '--sort-common',
];

export class GuestBuildError extends Error {
  constructor(message, detail = '') {
    super(detail ? `${message}\n${detail.trimEnd()}` : message);
    this.name = 'GuestBuildError';
  }
}

async function exists(p) {
  try {
    await fs.access(p);
    return true;
  } catch {
    return false;
  }
}

const isSource = (f) => f.endsWith('.c') || f.endsWith('.S');

/** Failures as GuestBuildError: the command line, the exit status, then the tool's output. */
function guestFailure(what, err, cmd, args) {
  const out = err && typeof err === 'object' ? `${err.stderr ?? ''}${err.stdout ?? ''}` : String(err);
  const exit = err && typeof err === 'object' && 'exitCode' in err ? ` (exit ${err.exitCode})` : '';
  return new GuestBuildError(`build-guests: ${what} failed${exit}: ${cmd} ${args.join(' ')}`, out || String(err));
}

/** @returns {import('./lib/build-kit.mjs').Runner} a runner in root */
const runnerIn = (root) => (cmd, args, what) =>
  runTool(cmd, args, what, { cwd: root, env: { ...process.env, LC_ALL: 'C' }, fail: guestFailure });

let toolInfoPromise;
function toolInfo() {
  toolInfoPromise ??= toolVersions(['gcc', 'ld', 'objcopy'], runnerIn(REPO_ROOT));
  return toolInfoPromise;
}

async function guestInputs(root, name, arch) {
  for (const dir of ['guests/lib/include', 'guests/lib/common', `guests/lib/${arch}`, `guests/${name}`]) {
    if (!(await exists(path.join(root, dir)))) throw new GuestBuildError(`build-guests: ${path.join(root, dir)} does not exist (wrong --root?)`);
  }
  const libFiles = [
    ...(await listFiles(root, 'guests/lib/include')),
    ...(await listFiles(root, 'guests/lib/common')),
    ...(await listFiles(root, `guests/lib/${arch}`)),
  ];
  const guestFiles = await listFiles(root, `guests/${name}`);
  for (const dir of INCLUDED_GUEST_DIRS[name] ?? []) libFiles.push(...(await listFiles(root, dir)));
  const sources = [
    ...libFiles.filter((f) => f.startsWith(`guests/lib/${arch}/`) && isSource(f)),
    ...libFiles.filter((f) => f.startsWith('guests/lib/common/') && isSource(f)),
    ...guestFiles.filter(isSource),
  ];
  if (!guestFiles.some(isSource)) throw new GuestBuildError(`build-guests: guests/${name} has no .c or .S sources`);
  return { hashed: [...libFiles, ...guestFiles], sources };
}

async function inputHash(root, name, arch, hashedFiles) {
  const h = inputHasher()
    .add('builder', await fs.readFile(SCRIPT))
    .add('builder-kit', await fs.readFile(KIT_FILE))
    .add('tools', JSON.stringify(await toolInfo()))
    .add('guest', `${name}:${arch}`)
    .add('flags', JSON.stringify([COMMON_CFLAGS, ARCH[arch], LDFLAGS]));
  await h.addFiles(root, hashedFiles);
  return h.digest();
}

async function upToDate(stamp, hash, outDir) {
  if (!stamp || stamp.inputHash !== hash || typeof stamp.outputs !== 'object') return false;
  for (const [file, digest] of Object.entries(stamp.outputs)) {
    if ((await fileSha(path.join(outDir, file))) !== digest) return false;
  }
  return true;
}

async function buildOne(root, name, arch, outDir, force) {
  const { hashed, sources } = await guestInputs(root, name, arch);
  const hash = await inputHash(root, name, arch, hashed);
  const stampPath = path.join(outDir, '.stamps', `${name}.json`);
  const elfPath = path.join(outDir, `${name}.elf`);
  if (!force && (await upToDate(await readStamp(stampPath), hash, outDir))) return { path: elfPath, built: false };

  const a = ARCH[arch];
  const run = runnerIn(root);
  return withTempDir(outDir, `.tmp-${name}-`, async (tmp) => {
    const objects = await compileAll(sources, {
      objDir: tmp,
      run,
      cflags: [...COMMON_CFLAGS, ...a.cflags, `-ffile-prefix-map=${root}/=`, `-ffile-prefix-map=${root}=.`],
      objName: (src) => `${src.replace(/\//g, '__').replace(/\.[cS]$/, '')}.o`,
      what: (src) => `compiling ${src} for ${name}`,
      jobs: 1, // guests are built two at a time already
    });
    const outputs = {};
    if (arch === 'x86_64') {
      const elf64 = path.join(tmp, `${name}.elf64`);
      await run('ld', ['-m', a.ldEmulation, ...LDFLAGS, '-T', a.linkScript, '-o', elf64, ...objects], `linking ${name}`);
      await run('objcopy', ['-O', 'elf32-i386', elf64, path.join(tmp, `${name}.elf`)], `converting ${name} to ELF32`);
      outputs[`${name}.elf64`] = elf64;
    } else {
      await run('ld', ['-m', a.ldEmulation, ...LDFLAGS, '-T', a.linkScript, '-o', path.join(tmp, `${name}.elf`), ...objects], `linking ${name}`);
    }
    outputs[`${name}.elf`] = path.join(tmp, `${name}.elf`);

    // Move into place atomically (concurrent builders produce identical bytes).
    const digests = {};
    for (const [file, src] of Object.entries(outputs)) digests[file] = await publish(src, path.join(outDir, file));
    await fs.mkdir(path.dirname(stampPath), { recursive: true });
    await writeStamp(stampPath, { guest: name, arch, inputHash: hash, outputs: digests }, tmp);
    return { path: elfPath, built: true };
  });
}

/** Remove temporary build directories left by killed builders (not recent ones: another builder may own them). */
async function sweepStaleTemps(outDir) {
  const cutoff = Date.now() - 10 * 60 * 1000;
  for (const entry of await fs.readdir(outDir, { withFileTypes: true })) {
    if (!entry.isDirectory() || !entry.name.startsWith('.tmp-')) continue;
    const p = path.join(outDir, entry.name);
    try {
      if ((await fs.stat(p)).mtimeMs < cutoff) await fs.rm(p, { recursive: true, force: true });
    } catch {
      // raced with its owner: fine
    }
  }
}

/**
 * Builds every guest. Returns guest name -> absolute path of its ELF32 image.
 * @param {{ force?: boolean, outDir?: string, root?: string, onProgress?: (name: string, built: boolean, path: string) => void }} [options]
 */
export async function buildGuests(options = {}) {
  const force = options.force === true;
  const root = path.resolve(options.root ?? REPO_ROOT);
  const outDir = path.resolve(options.outDir ?? DEFAULT_OUT_DIR);
  await fs.mkdir(outDir, { recursive: true });
  await sweepStaleTemps(outDir);
  await toolInfo();
  const result = {};
  // Fixed order; two at a time (the machines have two cores).
  // On the first failure no new guest is started, and the error is rethrown
  // only after the builds in flight have finished (and cleaned up).
  const names = Object.keys(GUESTS);
  let next = 0;
  let failure;
  const worker = async () => {
    while (next < names.length && failure === undefined) {
      const name = names[next++];
      try {
        const r = await buildOne(root, name, GUESTS[name], outDir, force);
        result[name] = r.path;
        options.onProgress?.(name, r.built, r.path);
      } catch (err) {
        failure ??= { err };
      }
    }
  };
  await Promise.all([worker(), worker()]);
  if (failure !== undefined) throw failure.err;
  const ordered = {};
  for (const name of names) ordered[name] = result[name];
  return ordered;
}

async function main(argv) {
  let force = false;
  let outDir;
  let root;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--force' || arg === '-f') force = true;
    else if (arg === '--out') outDir = argv[++i];
    else if (arg === '--root') root = argv[++i];
    else if (arg === '--help' || arg === '-h') {
      process.stdout.write('usage: node tools/build-guests.mjs [--force] [--out DIR] [--root DIR]\n');
      return 0;
    } else {
      process.stderr.write(`build-guests: unknown argument ${arg}\n`);
      return 2;
    }
  }
  try {
    await buildGuests({
      force,
      outDir,
      root,
      onProgress: (name, built, p) => process.stdout.write(`${built ? 'built     ' : 'up to date'} ${name.padEnd(8)} ${path.relative(process.cwd(), p)}\n`),
    });
    return 0;
  } catch (err) {
    process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === SCRIPT) {
  // A closed stdout (e.g. `| head`) must not abort a build half-way.
  process.stdout.on('error', (err) => {
    if (err.code !== 'EPIPE') throw err;
  });
  process.exitCode = await main(process.argv.slice(2));
}
