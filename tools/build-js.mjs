#!/usr/bin/env node
// Compiles the CLI's TypeScript into dist/ (git-ignored) so `firmament` starts without transpiling
// at every run. The TypeScript sources stay the truth: tools/firmament.mjs uses dist/ only while
// dist/manifest.json matches every source file it was built from (size and mtime), and otherwise
// falls back to running the sources through tsx. `npm install` runs this; so does `npm run build:js`.
//
// One esbuild bundle with code splitting: loading ~160 small ES modules cost more start-up than
// compiling them, and the dynamic import()s (bench, OCI registry, images) stay separate chunks.
// npm packages stay external (node_modules resolves them as before).
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const DIST = path.join(ROOT, 'dist');
export const MANIFEST = 'manifest.json';
const ENTRY = 'tools/cli/main.ts';

/**
 * Chunks sit directly in dist/, so code that finds files relative to its own module
 * (`import.meta.url`, e.g. PROJECT_ROOT in machine/cpu/unicorn/locate.ts) gets the URL of its
 * source file instead, computed from the chunk's location so the checkout can move.
 */
const sourceUrlPlugin = {
  name: 'source-url',
  setup(build) {
    build.onLoad({ filter: /\.(ts|mjs)$/ }, (args) => {
      if (args.path.includes(`${path.sep}node_modules${path.sep}`)) return undefined;
      const text = readFileSync(args.path, 'utf8');
      if (!text.includes('import.meta.url') && !text.includes('import.meta.dirname')) return undefined;
      const rel = path.relative(ROOT, args.path).split(path.sep).join('/');
      const url = `new URL(${JSON.stringify(`../${rel}`)}, import.meta.url).href`;
      const dir = `decodeURIComponent(new URL(${JSON.stringify(`../${path.posix.dirname(rel)}/`)}, import.meta.url).pathname).replace(/\\/$/, '')`;
      const contents = text.replaceAll('import.meta.url', url).replaceAll('import.meta.dirname', dir);
      return { contents, loader: args.path.endsWith('.ts') ? 'ts' : 'js' };
    });
  },
};

export async function buildJs({ quiet = false } = {}) {
  const esbuild = await import('esbuild');
  const tmp = `${DIST}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  const result = await esbuild.build({
    entryPoints: { main: path.join(ROOT, ENTRY) },
    bundle: true,
    splitting: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    packages: 'external',
    outdir: tmp,
    // Every file is named by its content: a running `firmament` that loads a chunk late (a
    // command's module, the debugger) finds it even after a rebuild published a new dist/.
    entryNames: '[name]-[hash]',
    chunkNames: 'chunk-[hash]',
    sourcemap: 'linked',
    metafile: true,
    logLevel: 'warning',
    absWorkingDir: ROOT,
    plugins: [sourceUrlPlugin],
  });
  const sources = {};
  for (const rel of Object.keys(result.metafile.inputs).sort()) {
    const st = statSync(path.join(ROOT, rel));
    sources[rel] = { size: st.size, mtimeMs: st.mtimeMs };
  }
  const outputs = Object.keys(result.metafile.outputs).map((f) => path.basename(f));
  const entry = outputs.find((f) => /^main-.*\.js$/.test(f));
  if (!entry) throw new Error('esbuild produced no main-*.js');
  // Publish: files first (new names only ever appear), then the manifest by one rename, the commit point.
  mkdirSync(DIST, { recursive: true });
  for (const f of outputs) renameSync(path.join(tmp, f), path.join(DIST, f));
  const manifest = path.join(DIST, MANIFEST);
  writeFileSync(`${manifest}.${process.pid}.tmp`, JSON.stringify({ entry, builtAt: new Date().toISOString(), esbuild: esbuild.version, files: outputs, sources }, null, 1));
  renameSync(`${manifest}.${process.pid}.tmp`, manifest);
  rmSync(tmp, { recursive: true, force: true });
  // Files of older builds go once no process started before them can still be loading them.
  const keep = new Set([...outputs, MANIFEST]);
  for (const f of readdirSync(DIST)) {
    if (keep.has(f)) continue;
    const full = path.join(DIST, f);
    try {
      if (Date.now() - statSync(full).mtimeMs > 10 * 60_000) rmSync(full, { force: true });
    } catch {
      // removed by a concurrent build
    }
  }
  if (!quiet) console.log(`dist/: ${Object.keys(sources).length} sources compiled into ${outputs.filter((f) => f.endsWith('.js')).length} files`);
  return { sources: Object.keys(sources).length };
}

/**
 * The dist/ entry if it was built from exactly the sources on disk, else null (with the reason).
 * Costs one stat per source file (~160), well under a millisecond each.
 */
export function freshDistEntry(dist = DIST) {
  let manifest;
  try {
    manifest = JSON.parse(readFileSync(path.join(dist, MANIFEST), 'utf8'));
  } catch {
    return { entry: null, reason: 'dist/ not built (npm run build:js)' };
  }
  for (const [rel, want] of Object.entries(manifest.sources ?? {})) {
    let st;
    try {
      st = statSync(path.join(ROOT, rel));
    } catch {
      return { entry: null, reason: `${rel} is gone since dist/ was built` };
    }
    if (st.size !== want.size || st.mtimeMs !== want.mtimeMs) return { entry: null, reason: `${rel} changed since dist/ was built` };
  }
  return { entry: pathToFileURL(path.join(dist, manifest.entry)).href, reason: null };
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  try {
    await buildJs();
  } catch (e) {
    console.error(`build-js: ${e instanceof Error ? e.message : String(e)}`);
    process.exitCode = 1;
  }
}
