#!/usr/bin/env node
// Fetches kvm-unit-tests (GPL: never copied into this repository) with git into the git-ignored
// .cache/kvm-unit-tests and builds its x86_64 tests there (./configure && make). Idempotent.
//   node tools/kvm-unit-tests/fetch-build.mjs [--source DIR|URL] [--ref REF]
//   -> .cache/kvm-unit-tests/x86/*.flat; run them with docs/kvm-unit-tests.md
// --source takes a local clone or another URL (default: the project's GitLab, where it lives).
import { $, fs, path, chalk, argv } from 'zx';
import { fileURLToPath } from 'node:url';

$.verbose = false;
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const KUT_DIR = path.join(root, '.cache/kvm-unit-tests');
const DEFAULT_SOURCE = 'https://gitlab.com/kvm-unit-tests/kvm-unit-tests.git';
const log = (msg) => console.log(chalk.cyan('[kvm-unit-tests]'), msg);

export async function fetchAndBuild({ source = DEFAULT_SOURCE, ref } = {}) {
  const marker = path.join(KUT_DIR, 'x86/dummy.flat');
  if (await fs.pathExists(marker)) return KUT_DIR;
  if (!(await fs.pathExists(path.join(KUT_DIR, 'configure')))) {
    await fs.remove(KUT_DIR);
    log(`git clone ${source}`);
    await $`git clone --quiet ${ref ? ['--branch', ref] : []} --depth 1 ${source} ${KUT_DIR}`;
  }
  log('./configure --arch=x86_64 && make');
  await $({ cwd: KUT_DIR })`./configure --arch=x86_64`;
  await $({ cwd: KUT_DIR })`make -j${Math.max(1, Math.min(4, (await import('node:os')).availableParallelism()))}`;
  if (!(await fs.pathExists(marker))) throw new Error(`kvm-unit-tests built, but ${marker} is missing`);
  return KUT_DIR;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  try {
    const dir = await fetchAndBuild({ ...(argv.source ? { source: String(argv.source) } : {}), ...(argv.ref ? { ref: String(argv.ref) } : {}) });
    log(`ready: ${dir}`);
  } catch (e) {
    console.error(chalk.red('[kvm-unit-tests]'), e.stderr || e.message);
    process.exitCode = 1;
  }
}
