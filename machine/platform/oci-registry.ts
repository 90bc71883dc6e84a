/**
 * Pulls firmware containers from an OCI registry with the plain distribution
 * HTTP API (no client library): catalog, tags, manifests by tag, blobs by
 * digest. Every manifest and blob is checked against its sha256 before use;
 * the index handed to the OS is built exactly as tools/oci-layout.mjs builds
 * a layout's, so the same images give the same measured-boot event log.
 *
 * URL form: http://HOST:PORT/<repository prefix>[:tag], e.g.
 * http://127.0.0.1:5000/firmament (every repository firmament/<name>, tag "latest").
 *
 * A registry is outside input: every request has a deadline (a hung registry
 * cannot block the boot past --timeout), every body is read as a stream and
 * cut off at its limit (a descriptor's size, or MAX_DOCUMENT_BYTES for JSON),
 * and every document is schema-checked (oci-documents.ts).
 */
import { createHash } from 'node:crypto';
import type { FwCfgFile } from './container-source.js';
import { RegistryError } from './registry-error.js';
import { FWCFG_BLOB_PREFIX, FWCFG_INDEX } from './oci-fwcfg.mjs';
import { MAX_DOCUMENT_BYTES, MT_INDEX, MT_MANIFEST, OciDocumentError, parseOciManifest, parseRegistryCatalog } from './oci-documents.js';

/** Without --timeout, one request may take this long (the registry is on a LAN or loopback). */
export const DEFAULT_REQUEST_TIMEOUT_MS = 60_000;
const REF_NAME = 'org.opencontainers.image.ref.name';

export { RegistryError };

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

export interface RegistryPullOptions {
  /** The whole pull must finish within this (the boot's --timeout); each request also has DEFAULT_REQUEST_TIMEOUT_MS. */
  timeoutMs?: number;
}

interface Budget {
  deadline: number;
  what: string;
}

/** GET with a deadline and a size cap: the body is streamed and the request aborted past `maxBytes`. */
async function get(url: string, budget: Budget, maxBytes: number, accept?: string): Promise<{ body: Uint8Array; digestHeader: string | null }> {
  const remaining = Math.min(budget.deadline - Date.now(), DEFAULT_REQUEST_TIMEOUT_MS);
  if (remaining <= 0) throw new RegistryError(`GET ${url}: ${budget.what} ran out before this request`);
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), remaining);
  const timedOut = (): RegistryError => new RegistryError(`GET ${url}: no complete answer within ${Math.round(remaining)} ms (${budget.what})`);
  try {
    let res: Response;
    try {
      res = await fetch(url, { signal: abort.signal, ...(accept ? { headers: { Accept: accept } } : {}) });
    } catch (e) {
      if (abort.signal.aborted) throw timedOut();
      throw new RegistryError(`GET ${url}: ${(e as Error).message}`);
    }
    if (!res.ok) {
      await res.body?.cancel().catch(() => {});
      throw new RegistryError(`GET ${url}: HTTP ${res.status} ${res.statusText}`);
    }
    const declared = Number(res.headers.get('content-length') ?? NaN);
    if (Number.isFinite(declared) && declared > maxBytes) {
      await res.body?.cancel().catch(() => {});
      throw new RegistryError(`GET ${url}: Content-Length ${declared} is more than the ${maxBytes} bytes expected`);
    }
    const chunks: Uint8Array[] = [];
    let received = 0;
    if (res.body) {
      const reader = res.body.getReader();
      try {
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          received += value.length;
          if (received > maxBytes) {
            await reader.cancel().catch(() => {});
            throw new RegistryError(`GET ${url}: the body passed ${maxBytes} bytes, more than expected; aborted`);
          }
          chunks.push(value);
        }
      } catch (e) {
        if (e instanceof RegistryError) throw e;
        if (abort.signal.aborted) throw timedOut();
        throw new RegistryError(`GET ${url}: ${(e as Error).message}`);
      }
    }
    const body = new Uint8Array(received);
    let o = 0;
    for (const c of chunks) {
      body.set(c, o);
      o += c.length;
    }
    return { body, digestHeader: res.headers.get('docker-content-digest') };
  } finally {
    clearTimeout(timer);
  }
}

/** Document errors are the registry's: reported as RegistryError, naming the document. */
function document<T>(parse: () => T): T {
  try {
    return parse();
  } catch (e) {
    if (e instanceof OciDocumentError) throw new RegistryError(e.message);
    throw e;
  }
}

/** Pulls every repository under the prefix and returns the fw_cfg files the OS reads. */
export async function registryFwCfgFiles(url: string, opts: RegistryPullOptions = {}): Promise<FwCfgFile[]> {
  const t = parseRegistryUrl(url);
  const budget: Budget = opts.timeoutMs !== undefined ? { deadline: Date.now() + opts.timeoutMs, what: `--timeout ${opts.timeoutMs / 1000} s` } : { deadline: Infinity, what: `the ${DEFAULT_REQUEST_TIMEOUT_MS / 1000} s per-request limit` };
  const catalogUrl = `${t.base}/v2/_catalog?n=1000`;
  const catalogBody = (await get(catalogUrl, budget, MAX_DOCUMENT_BYTES)).body;
  const repos = document(() => parseRegistryCatalog(catalogBody, catalogUrl)).filter((r) => r.startsWith(`${t.prefix}/`)).sort();
  if (repos.length === 0) throw new RegistryError(`${url}: no repositories under ${t.prefix}/ in the registry catalog`);
  const blobs = new Map<string, Uint8Array>();
  const images: { name: string; digest: string; size: number }[] = [];
  for (const repo of repos) {
    const name = repo.slice(t.prefix.length + 1);
    const m = await get(`${t.base}/v2/${repo}/manifests/${encodeURIComponent(t.tag)}`, budget, MAX_DOCUMENT_BYTES, MT_MANIFEST);
    const digest = sha256(m.body);
    if (m.digestHeader && m.digestHeader !== digest) throw new RegistryError(`${repo}:${t.tag}: manifest digest ${digest} does not match the registry's ${m.digestHeader}`);
    const manifest = document(() => parseOciManifest(m.body, `${repo}:${t.tag} manifest`));
    blobs.set(digest, m.body);
    for (const d of [manifest.config, ...manifest.layers]) {
      // The descriptor's size bounds the download: a blob that keeps coming is cut off there.
      const b = (await get(`${t.base}/v2/${repo}/blobs/${d.digest}`, budget, d.size)).body;
      if (b.length !== d.size) throw new RegistryError(`${repo}: blob ${d.digest} is ${b.length} bytes, its descriptor says ${d.size}`);
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
