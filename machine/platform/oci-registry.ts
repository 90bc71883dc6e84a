/**
 * Pulls firmware containers from an OCI registry with the plain distribution
 * HTTP API (no client library): catalog, tags, manifests by tag, blobs by
 * digest. Every manifest and blob is checked against its sha256 before use;
 * the index handed to the OS is built exactly as tools/oci-layout.mjs builds
 * a layout's, so the same images give the same measured-boot event log.
 *
 * URL form: http://HOST:PORT/<repository prefix>[:tag], e.g.
 * http://127.0.0.1:5000/firmament (every repository firmament/<name>, tag "latest").
 */
import { createHash } from 'node:crypto';
import type { FwCfgFile } from './container-source.js';
import { RegistryError } from './registry-error.js';
import { DEFAULT_REGISTRY_TIMEOUT_MS, registryRequest } from './registry-http.js';

export { RegistryError };

const MT_INDEX = 'application/vnd.oci.image.index.v1+json';
const MT_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const REF_NAME = 'org.opencontainers.image.ref.name';
const FWCFG_INDEX = 'opt/fm/oci/index.json';
const FWCFG_BLOB_PREFIX = 'opt/fm/blob/';

const sha256 = (b: Uint8Array): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

export interface RegistryTarget {
  base: string;
  prefix: string;
  tag: string;
}

export function parseRegistryUrl(url: string): RegistryTarget {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new RegistryError(`--registry ${url}: not a URL (expected http://host:port/prefix[:tag])`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new RegistryError(`--registry ${url}: only http(s) registries are supported`);
  let path = u.pathname.replace(/^\/+|\/+$/g, '');
  let tag = 'latest';
  const colon = path.lastIndexOf(':');
  if (colon > 0) {
    tag = path.slice(colon + 1);
    path = path.slice(0, colon);
  }
  if (!path) throw new RegistryError(`--registry ${url}: give a repository prefix, e.g. ${u.origin}/firmament`);
  return { base: u.origin, prefix: path, tag };
}

/** Firmware container blobs are small; anything near this is not one of ours. */
const MAX_BLOB_BYTES = 256 * 1024 * 1024;

async function get(url: string, accept?: string): Promise<{ body: Uint8Array; digestHeader: string | null }> {
  const res = await registryRequest(url, { ...(accept ? { headers: { Accept: accept } } : {}), timeoutMs: DEFAULT_REGISTRY_TIMEOUT_MS, maxBytes: MAX_BLOB_BYTES });
  if (res.status < 200 || res.status > 299) throw new RegistryError(`GET ${url}: HTTP ${res.status} ${res.statusText}`);
  return { body: res.body, digestHeader: res.headers.get('docker-content-digest') };
}

function json<T>(bytes: Uint8Array, what: string): T {
  try {
    return JSON.parse(Buffer.from(bytes).toString('utf8')) as T;
  } catch (e) {
    throw new RegistryError(`${what}: not JSON (${(e as Error).message})`);
  }
}

interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
}

/** Pulls every repository under the prefix and returns the fw_cfg files the OS reads. */
export async function registryFwCfgFiles(url: string): Promise<FwCfgFile[]> {
  const t = parseRegistryUrl(url);
  const catalog = json<{ repositories?: string[] }>((await get(`${t.base}/v2/_catalog?n=1000`)).body, `${t.base}/v2/_catalog`);
  const repos = (catalog.repositories ?? []).filter((r) => r.startsWith(`${t.prefix}/`)).sort();
  if (repos.length === 0) throw new RegistryError(`${url}: no repositories under ${t.prefix}/ in the registry catalog`);
  const blobs = new Map<string, Uint8Array>();
  const images: { name: string; digest: string; size: number }[] = [];
  for (const repo of repos) {
    const name = repo.slice(t.prefix.length + 1);
    const m = await get(`${t.base}/v2/${repo}/manifests/${t.tag}`, MT_MANIFEST);
    const digest = sha256(m.body);
    if (m.digestHeader && m.digestHeader !== digest) throw new RegistryError(`${repo}:${t.tag}: manifest digest ${digest} does not match the registry's ${m.digestHeader}`);
    const manifest = json<{ mediaType?: string; config?: Descriptor; layers?: Descriptor[] }>(m.body, `${repo}:${t.tag} manifest`);
    if (manifest.mediaType !== MT_MANIFEST || !manifest.config || !manifest.layers) throw new RegistryError(`${repo}:${t.tag}: not an OCI image manifest`);
    blobs.set(digest, m.body);
    for (const d of [manifest.config, ...manifest.layers]) {
      const b = (await get(`${t.base}/v2/${repo}/blobs/${d.digest}`)).body;
      // The OS verifies again; checking here names the registry as the culprit.
      if (sha256(b) !== d.digest) throw new RegistryError(`${repo}: blob ${d.digest} arrived with digest ${sha256(b)} (${b.length} bytes)`);
      blobs.set(d.digest, b);
    }
    images.push({ name, digest, size: m.body.length });
  }
  const index = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MT_INDEX,
      manifests: images.map((im) => ({ mediaType: MT_MANIFEST, digest: im.digest, size: im.size, annotations: { [REF_NAME]: im.name } })),
    }),
  );
  const files: FwCfgFile[] = [{ name: FWCFG_INDEX, data: new Uint8Array(index) }];
  for (const [digest, data] of [...blobs].sort(([a], [b]) => (a < b ? -1 : 1))) files.push({ name: `${FWCFG_BLOB_PREFIX}${digest.slice(7, 47)}`, data });
  return files;
}
