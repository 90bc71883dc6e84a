/** `firmament containers list|build|verify`: the firmware containers as OCI images. */
import { parseArgs } from 'node:util';
import { join } from 'node:path';
import { buildOciLayout, checkLayout, loadContainerMeta, DEFAULT_LAYOUT_DIR } from '../../tools/oci-layout.mjs';
import { toJson, UsageError } from './args.js';
import { InputFileError, readInputFile } from '../../machine/platform/input-file.js';

export const CONTAINERS_HELP = `firmament containers <list|build|verify> [options]
  The temporary firmware containers the lightweight OS runs during boot, as an OCI
  image layout (images/oci/firmament, built from firmware/containers/).

  list [--layout DIR] [--json]   name, manifest digest, purpose, limits and device grants
  build [--force] [--all]        build the layout (--all: include test-only containers)
  verify [--layout DIR]          check every digest, size, media type and tar layer; exit 1 on problems

  Push to a registry with skopeo (digests preserved, the OS verifies them):
    skopeo copy --dest-tls-verify=false --preserve-digests \\
      oci:images/oci/firmament:<name> docker://127.0.0.1:5000/firmament/<name>:latest
  then boot from it: firmament boot --registry http://127.0.0.1:5000/firmament`;

interface IndexJson {
  manifests: { digest: string; size: number; annotations?: Record<string, string> }[];
}

export async function containersCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args: argv, allowPositionals: true, options: { layout: { type: 'string' }, force: { type: 'boolean' }, all: { type: 'boolean' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } } });
  const [sub] = positionals;
  if (values.help || sub === undefined) {
    console.log(CONTAINERS_HELP);
    return values.help ? 0 : 2;
  }
  const layout = values.layout ?? DEFAULT_LAYOUT_DIR;
  switch (sub) {
    case 'build': {
      const r = await buildOciLayout({ force: values.force === true, quiet: true, ...(values.all ? { containers: await allContainerNames() } : {}) });
      for (const c of r.containers) console.log(`${c.name.padEnd(16)} ${c.manifestDigest}`);
      console.log(`${r.built ? 'built' : 'up to date'}: ${r.layoutDir}`);
      return 0;
    }
    case 'list': {
      if (values.layout === undefined) await buildOciLayout({ quiet: true });
      const index = readLayoutIndex(layout);
      const rows = [];
      for (const m of index.manifests) {
        const name = m.annotations?.['org.opencontainers.image.ref.name'] ?? '?';
        const meta = await loadContainerMeta(name).catch(() => null);
        rows.push({ name, digest: m.digest, purpose: meta?.purpose ?? '', memory: meta?.memory ?? null, timeLimitMs: meta?.timeLimitMs ?? null, devices: meta?.devices ?? [] });
      }
      if (values.json) console.log(toJson(rows));
      else for (const r of rows) console.log(`${r.name.padEnd(10)} ${r.digest.slice(0, 19)}…  ${String(r.timeLimitMs).padStart(5)} ms  ${r.devices.join(',').padEnd(28)} ${r.purpose}`);
      return 0;
    }
    case 'verify': {
      const problems = checkLayout(layout);
      if (problems.length === 0) {
        console.log(`${layout}: OK`);
        return 0;
      }
      for (const p of problems) console.error(`${layout}: ${p}`);
      return 1;
    }
    default:
      throw new UsageError(`containers: unknown subcommand '${sub}' (list, build or verify)`);
  }
}

/** The layout's index.json, checked enough to list it: a missing or broken layout is named, not a stack trace. */
function readLayoutIndex(layout: string): IndexJson {
  const path = join(layout, 'index.json');
  const bytes = readInputFile(path, { what: 'OCI layout index', maxBytes: 16 * 1024 * 1024 });
  let index: unknown;
  try {
    index = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch (e) {
    throw new InputFileError(path, `not JSON: ${(e as Error).message}`);
  }
  const manifests = (index as { manifests?: unknown })?.manifests;
  if (!Array.isArray(manifests) || !manifests.every((m) => m !== null && typeof m === 'object' && typeof (m as { digest?: unknown }).digest === 'string')) throw new InputFileError(path, 'not an OCI image index (manifests[] with a digest each)');
  return index as IndexJson;
}

async function allContainerNames(): Promise<string[]> {
  const { readdirSync, existsSync } = await import('node:fs');
  const dir = join(import.meta.dirname, '../../firmware/containers');
  return readdirSync(dir)
    .filter((n) => existsSync(join(dir, n, 'container.json')))
    .sort();
}
