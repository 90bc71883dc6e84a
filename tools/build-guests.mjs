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
//   (sources, headers, link script, this script, tool versions) changes; the
//   hash is kept in <outDir>/.stamps/<name>.json.
// * 64-bit guests are linked as ELF64 (<name>.elf64, kept for symbols) and
//   converted with `objcopy -O elf32-i386` to <name>.elf, because QEMU's
//   Multiboot loader only takes ELF32. The program headers' physical
//   addresses survive the conversion.
import { $ } from 'zx';
import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

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
});

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

const sha256 = (data) => crypto.createHash('sha256').update(data).digest('hex');

async function exists(p) {
  try {
    await fs.access(p);
    return true;
  } catch {
    return false;
  }
}

/** Files under dir (relative to root, '/' separated), sorted bytewise. */
async function listFiles(root, relDir) {
  const out = [];
  async function walk(rel) {
    const entries = await fs.readdir(path.join(root, rel), { withFileTypes: true });
    for (const e of entries) {
      const r = `${rel}/${e.name}`;
      if (e.isDirectory()) await walk(r);
      else if (e.isFile()) out.push(r);
    }
  }
  await walk(relDir);
  return out.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

const isSource = (f) => f.endsWith('.c') || f.endsWith('.S');

async function run(root, cmd, args, what) {
  try {
    return await $({ cwd: root, quiet: true, env: { ...process.env, LC_ALL: 'C' } })`${cmd} ${args}`;
  } catch (err) {
    const out = err && typeof err === 'object' ? `${err.stderr ?? ''}${err.stdout ?? ''}` : String(err);
    const exit = err && typeof err === 'object' && 'exitCode' in err ? ` (exit ${err.exitCode})` : '';
    throw new GuestBuildError(`build-guests: ${what} failed${exit}: ${cmd} ${args.join(' ')}`, out || String(err));
  }
}

let toolInfoPromise;
function toolInfo() {
  toolInfoPromise ??= (async () => {
    const versions = {};
    for (const tool of ['gcc', 'ld', 'objcopy']) {
      const out = await run(REPO_ROOT, tool, ['--version'], `checking ${tool} (is the toolchain installed?)`);
      versions[tool] = out.stdout.split('\n')[0];
    }
    return versions;
  })();
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
  const sources = [
    ...libFiles.filter((f) => f.startsWith(`guests/lib/${arch}/`) && isSource(f)),
    ...libFiles.filter((f) => f.startsWith('guests/lib/common/') && isSource(f)),
    ...guestFiles.filter(isSource),
  ];
  if (!guestFiles.some(isSource)) throw new GuestBuildError(`build-guests: guests/${name} has no .c or .S sources`);
  return { hashed: [...libFiles, ...guestFiles], sources };
}

async function inputHash(root, name, arch, hashedFiles) {
  const h = crypto.createHash('sha256');
  const feed = (label, data) => {
    h.update(`${label}\0${data.length}\0`);
    h.update(data);
  };
  feed('builder', await fs.readFile(SCRIPT));
  feed('tools', JSON.stringify(await toolInfo()));
  feed('guest', `${name}:${arch}`);
  feed('flags', JSON.stringify([COMMON_CFLAGS, ARCH[arch], LDFLAGS]));
  for (const f of hashedFiles) feed(`file:${f}`, await fs.readFile(path.join(root, f)));
  return h.digest('hex');
}

async function readStamp(stampPath) {
  try {
    return JSON.parse(await fs.readFile(stampPath, 'utf8'));
  } catch {
    return null;
  }
}

async function upToDate(stamp, hash, outDir) {
  if (!stamp || stamp.inputHash !== hash || typeof stamp.outputs !== 'object') return false;
  for (const [file, digest] of Object.entries(stamp.outputs)) {
    const p = path.join(outDir, file);
    if (!(await exists(p))) return false;
    if (sha256(await fs.readFile(p)) !== digest) return false;
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
  const tmp = await fs.mkdtemp(path.join(outDir, `.tmp-${name}-`));
  try {
    const cflags = [...COMMON_CFLAGS, ...a.cflags, `-ffile-prefix-map=${root}/=`, `-ffile-prefix-map=${root}=.`];
    const objects = [];
    for (const src of sources) {
      const obj = path.join(tmp, `${src.replace(/\//g, '__').replace(/\.[cS]$/, '')}.o`);
      await run(root, 'gcc', [...cflags, '-c', src, '-o', obj], `compiling ${src} for ${name}`);
      objects.push(obj);
    }
    const outputs = {};
    if (arch === 'x86_64') {
      const elf64 = path.join(tmp, `${name}.elf64`);
      await run(root, 'ld', ['-m', a.ldEmulation, ...LDFLAGS, '-T', a.linkScript, '-o', elf64, ...objects], `linking ${name}`);
      await run(root, 'objcopy', ['-O', 'elf32-i386', elf64, path.join(tmp, `${name}.elf`)], `converting ${name} to ELF32`);
      outputs[`${name}.elf64`] = elf64;
    } else {
      await run(root, 'ld', ['-m', a.ldEmulation, ...LDFLAGS, '-T', a.linkScript, '-o', path.join(tmp, `${name}.elf`), ...objects], `linking ${name}`);
    }
    outputs[`${name}.elf`] = path.join(tmp, `${name}.elf`);

    // Move into place atomically (concurrent builders produce identical bytes).
    const digests = {};
    for (const [file, src] of Object.entries(outputs)) {
      digests[file] = sha256(await fs.readFile(src));
      await fs.rename(src, path.join(outDir, file));
    }
    await fs.mkdir(path.dirname(stampPath), { recursive: true });
    const stampTmp = path.join(tmp, 'stamp.json');
    await fs.writeFile(stampTmp, `${JSON.stringify({ guest: name, arch, inputHash: hash, outputs: digests }, null, 2)}\n`);
    await fs.rename(stampTmp, stampPath);
    return { path: elfPath, built: true };
  } finally {
    await fs.rm(tmp, { recursive: true, force: true });
  }
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
