#!/usr/bin/env node
// Fetches Debian 12's cloud kernel (linux-image-*-cloud-amd64) and busybox-static with
// `apt-get download` into the git-ignored .cache/linux (a private sources list and apt
// state, as tools/setup.mjs does for Unicorn), unpacks them with dpkg-deb, and builds
// .cache/linux/initramfs.cpio.gz with tools/initramfs.mjs. Idempotent.
//   node tools/fetch-linux.mjs   ->  .cache/linux/vmlinuz, .cache/linux/initramfs.cpio.gz
import { $, fs, path, chalk } from 'zx';
import { fileURLToPath } from 'node:url';
import { busyboxInitramfs } from './initramfs.mjs';

$.verbose = false;
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const dir = path.join(root, '.cache/linux');
const log = (msg) => console.log(chalk.cyan('[linux]'), msg);

export async function fetchLinux() {
  const vmlinuz = path.join(dir, 'vmlinuz');
  const initramfs = path.join(dir, 'initramfs.cpio.gz');
  if ((await fs.pathExists(vmlinuz)) && (await fs.pathExists(initramfs))) return { vmlinuz, initramfs };
  const apt = path.join(dir, 'apt');
  for (const d of ['lists/partial', 'archives/partial', 'sources.d']) await fs.mkdirp(path.join(apt, d));
  await fs.writeFile(path.join(apt, 'sources.d/bookworm.sources'), 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n');
  const opts = ['-o', 'Dir::Etc::sourcelist=/dev/null', '-o', `Dir::Etc::sourceparts=${path.join(apt, 'sources.d')}`, '-o', `Dir::State::Lists=${path.join(apt, 'lists')}`, '-o', `Dir::Cache=${apt}`, '-o', 'APT::Sandbox::User=root'];
  log('apt-get update (Debian 12 bookworm, private lists)');
  await $`apt-get ${opts} update`;
  // The metapackage names the current ABI's image package.
  const depends = (await $`apt-cache ${opts} depends linux-image-cloud-amd64`).stdout;
  const image = /Depends: (linux-image-[0-9][^\s]*-cloud-amd64)/.exec(depends)?.[1];
  if (!image) throw new Error(`linux-image-cloud-amd64 names no kernel package:\n${depends}`);
  const debs = path.join(dir, 'debs');
  await fs.emptyDir(debs);
  log(`apt-get download ${image} busybox-static`);
  await $({ cwd: debs })`apt-get ${opts} download ${image} busybox-static`;
  const tree = path.join(dir, 'root');
  await fs.emptyDir(tree);
  for (const deb of (await fs.readdir(debs)).filter((f) => f.endsWith('.deb')).sort()) await $`dpkg-deb -x ${path.join(debs, deb)} ${tree}`;
  const kernel = (await fs.readdir(path.join(tree, 'boot'))).find((f) => f.startsWith('vmlinuz-'));
  if (!kernel) throw new Error(`${image} holds no /boot/vmlinuz-*`);
  await fs.copy(path.join(tree, 'boot', kernel), vmlinuz);
  await fs.writeFile(path.join(dir, 'VERSION'), `${kernel.replace(/^vmlinuz-/, '')}\n`);
  await fs.writeFile(initramfs, busyboxInitramfs(await fs.readFile(path.join(tree, 'bin/busybox'))));
  log(`${path.relative(root, vmlinuz)} (${kernel}), ${path.relative(root, initramfs)}`);
  return { vmlinuz, initramfs };
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  try {
    await fetchLinux();
  } catch (e) {
    console.error(chalk.red('[linux] failed:'), e.stderr || e.message || e);
    process.exit(1);
  }
}
