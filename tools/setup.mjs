#!/usr/bin/env node
// `npm install` runs this: provide Unicorn >= 2.1, build the native CPU helper,
// build the firmware and guest images, and fetch the Debian kernel and busybox the
// Linux boot test runs (tools/fetch-linux.mjs). Every step is idempotent.
import { $, fs, path, chalk } from 'zx';
import { fileURLToPath } from 'node:url';
import koffi from 'koffi';

$.verbose = false;
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const cache = path.join(root, '.cache');
const cachedLib = path.join(cache, 'unicorn/usr/lib/x86_64-linux-gnu/libunicorn.so.2');
const systemLibs = ['/usr/lib/x86_64-linux-gnu/libunicorn.so.2', '/usr/local/lib/libunicorn.so.2', '/usr/lib/libunicorn.so.2'];

const log = (msg) => console.log(chalk.cyan('[setup]'), msg);

function unicornVersion(lib) {
  try {
    const l = koffi.load(lib);
    const raw = l.func('unsigned int uc_version(void *major, void *minor)')(null, null) >>> 0;
    const v = { major: (raw >>> 24) & 0xff, minor: (raw >>> 16) & 0xff, patch: (raw >>> 8) & 0xff };
    return { ...v, ok: v.major > 2 || (v.major === 2 && v.minor >= 1), text: `${v.major}.${v.minor}.${v.patch}` };
  } catch (e) {
    return { ok: false, text: `unloadable (${e.message})` };
  }
}

async function fetchFromDebian() {
  // Debian 13's libunicorn2t64 depends only on libc6 >= 2.34, so it loads on Debian 12.
  // A private sources list and state dir keep the system's apt configuration untouched.
  const aptDir = path.join(cache, 'apt');
  await fs.mkdirp(path.join(aptDir, 'lists/partial'));
  await fs.mkdirp(path.join(aptDir, 'sources.d'));
  await fs.mkdirp(path.join(aptDir, 'archives/partial'));
  await fs.writeFile(
    path.join(aptDir, 'sources.d/trixie.sources'),
    'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: trixie\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n',
  );
  const opts = [
    '-o', 'Dir::Etc::sourcelist=/dev/null',
    '-o', `Dir::Etc::sourceparts=${path.join(aptDir, 'sources.d')}`,
    '-o', `Dir::State::Lists=${path.join(aptDir, 'lists')}`,
    '-o', `Dir::Cache=${aptDir}`,
    '-o', 'APT::Sandbox::User=root',
  ];
  log('fetching libunicorn2t64 (Unicorn 2.1) from Debian trixie with apt-get download');
  await $`apt-get ${opts} update`;
  const dl = path.join(aptDir, 'debs');
  await fs.mkdirp(dl);
  await $({ cwd: dl })`apt-get ${opts} download libunicorn2t64 libunicorn-dev`;
  for (const deb of (await fs.readdir(dl)).filter((f) => f.endsWith('.deb')).sort()) {
    await $`dpkg-deb -x ${path.join(dl, deb)} ${path.join(cache, 'unicorn')}`;
  }
}

async function ensureUnicorn() {
  const fromEnv = process.env.FIRMAMENT_UNICORN;
  if (fromEnv) {
    const v = unicornVersion(fromEnv);
    if (!v.ok) throw new Error(`FIRMAMENT_UNICORN=${fromEnv} is Unicorn ${v.text}; Firmament needs >= 2.1 (2.0.x does not translate through page tables)`);
    log(`Unicorn ${v.text} from FIRMAMENT_UNICORN`);
    return fromEnv;
  }
  for (const lib of systemLibs) {
    if (!(await fs.pathExists(lib))) continue;
    const v = unicornVersion(lib);
    if (v.ok) {
      log(`Unicorn ${v.text} from the system (${lib})`);
      return lib;
    }
    log(`system ${lib} is Unicorn ${v.text}: too old (need >= 2.1), not used`);
  }
  if (!(await fs.pathExists(cachedLib))) await fetchFromDebian();
  const v = unicornVersion(cachedLib);
  if (!v.ok) throw new Error(`fetched ${cachedLib} reports Unicorn ${v.text}; need >= 2.1`);
  log(`Unicorn ${v.text} in ${path.relative(root, cachedLib)}`);
  return cachedLib;
}

async function buildHelper() {
  const srcs = ['fmcpu.c', 'tlbfill.c', 'shm.c'].map((f) => path.join(root, 'machine/cpu/native', f));
  const out = path.join(cache, 'native/libfmcpu.so');
  await fs.mkdirp(path.dirname(out));
  const outTime = (await fs.pathExists(out)) ? (await fs.stat(out)).mtimeMs : -1;
  let fresh = outTime >= 0;
  for (const src of srcs) fresh &&= outTime >= (await fs.stat(src)).mtimeMs;
  if (fresh) return;
  log('building the native CPU helper');
  await $`gcc -O2 -shared -fPIC -Wall -Werror -o ${out} ${srcs} -ldl -lgcc_s`;
}

async function buildImages() {
  const script = path.join(root, 'tools/build-images.mjs');
  if (!(await fs.pathExists(script))) return;
  const { buildImages } = await import(script);
  await buildImages({ quiet: false });
}

try {
  await ensureUnicorn();
  await buildHelper();
  if (!process.argv.includes('--no-images')) await buildImages();
  // Test images nobody here wrote (docs/linux.md): fetched like Unicorn, into the git-ignored cache.
  if (!process.argv.includes('--no-images') && !process.argv.includes('--no-linux')) {
    const { fetchLinux } = await import(path.join(root, 'tools/fetch-linux.mjs'));
    await fetchLinux();
  }
} catch (e) {
  console.error(chalk.red('[setup] failed:'), e.stderr || e.message || e);
  process.exit(1);
}
