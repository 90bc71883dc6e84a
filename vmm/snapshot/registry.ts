/**
 * Push and pull of snapshots over the plain OCI distribution API (the same
 * registries the firmware containers come from). Push HEADs each blob and
 * uploads only those the registry lacks; pull downloads only the blobs this
 * store lacks. Every request has a deadline and a size cap.
 */
import { RegistryError } from '../../machine/platform/registry-error.js';
import { DEFAULT_REGISTRY_TIMEOUT_MS, registryRequest, type RegistryResponse } from '../../machine/platform/registry-http.js';
import { SnapshotStoreError } from './errors.js';
import { ARTIFACT_TYPE, checkRef, MAX_MANIFEST_BYTES, MT_MANIFEST, parseConfig, parseManifest, type Descriptor, type SnapshotManifest } from './format.js';
import { sha256, type IndexEntry, type Layout } from './layout.js';

export interface RegistryOptions {
  /** Deadline of each request (default 30 s). */
  timeoutMs?: number;
}

export interface TransferReport {
  ref: string;
  remote: string;
  digest: string;
  /** Blobs the snapshot has (config, state, chunks), not counting the manifest. */
  blobs: number;
  transferredBlobs: number;
  skippedBlobs: number;
  /** Bytes sent (push) or received (pull), manifest included. */
  bytesTransferred: number;
  /** What a transfer of everything would have moved, manifest included. */
  bytesTotal: number;
}

export interface RemoteRef {
  base: string;
  repo: string;
  tag: string;
}

const REPO_RE = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$/;

/** http(s)://HOST:PORT/REPO[:TAG]; the tag defaults to defaultTag. */
export function parseRemoteRef(url: string, defaultTag?: string): RemoteRef {
  const hint = 'expected http://HOST:PORT/REPOSITORY[:TAG], e.g. http://127.0.0.1:5000/firmament/snapshots:vm1';
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new RegistryError(`registry reference ${JSON.stringify(url)}: not a URL (${hint})`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new RegistryError(`registry reference ${url}: only http(s) registries are supported (${hint})`);
  if (u.search || u.hash || u.username) throw new RegistryError(`registry reference ${url}: no query, fragment or credentials (${hint})`);
  let repo = u.pathname.replace(/^\/+|\/+$/g, '');
  let tag = defaultTag;
  const colon = repo.lastIndexOf(':');
  if (colon >= 0) {
    tag = repo.slice(colon + 1);
    repo = repo.slice(0, colon);
  }
  if (!REPO_RE.test(repo)) throw new RegistryError(`registry reference ${url}: repository ${JSON.stringify(repo)} is not a valid name (lower case, digits, separators . _ - /; ${hint})`);
  if (tag === undefined) throw new RegistryError(`registry reference ${url}: give a tag (${hint})`);
  checkRef(tag);
  return { base: u.origin, repo, tag };
}

const remoteName = (r: RemoteRef) => `${r.base}/${r.repo}:${r.tag}`;

class Client {
  bytes = 0;
  constructor(
    readonly remote: RemoteRef,
    private readonly timeoutMs: number,
  ) {}

  url(p: string): string {
    return `${this.remote.base}/v2/${this.remote.repo}/${p}`;
  }

  async request(url: string, init: { method?: 'GET' | 'HEAD' | 'POST' | 'PUT'; headers?: Record<string, string>; body?: Uint8Array; maxBytes: number }): Promise<RegistryResponse> {
    const res = await registryRequest(url, { ...init, timeoutMs: this.timeoutMs });
    if (res.status === 401 || res.status === 403) throw new RegistryError(`${init.method ?? 'GET'} ${url}: HTTP ${res.status}: the registry wants credentials; only registries without authentication are supported`);
    return res;
  }

  /** A blob, checked against its descriptor (size cap = the declared size). */
  async getBlob(d: Descriptor, what: string): Promise<Uint8Array> {
    const url = this.url(`blobs/${d.digest}`);
    const res = await this.request(url, { maxBytes: d.size });
    if (res.status !== 200) throw new RegistryError(`GET ${url} (${what}): HTTP ${res.status} ${res.statusText}`);
    this.bytes += res.body.length;
    if (res.body.length !== d.size) throw new RegistryError(`GET ${url} (${what}): ${res.body.length} bytes, the manifest says ${d.size}`);
    const actual = sha256(res.body);
    if (actual !== d.digest) throw new RegistryError(`GET ${url} (${what}): content hashes to ${actual}, not ${d.digest}`);
    return res.body;
  }
}

export async function pushSnapshot(layout: Layout, local: { ref: string; manifest: SnapshotManifest; manifestDigest: string; manifestSize: number }, registry: string, opts: RegistryOptions): Promise<TransferReport> {
  const remote = parseRemoteRef(registry, local.ref);
  const c = new Client(remote, opts.timeoutMs ?? DEFAULT_REGISTRY_TIMEOUT_MS);
  const name = `snapshot '${local.ref}'`;
  // Read (and so verify) the manifest before sending anything: never publish a corrupt snapshot.
  const manifestBytes = await layout.readBlob({ digest: local.manifestDigest, size: local.manifestSize }, `${name}: manifest`);
  const blobs: { d: Descriptor; what: string }[] = [{ d: local.manifest.config, what: 'config' }, ...local.manifest.layers.map((d, i) => ({ d, what: i === 0 ? 'state' : 'memory chunk' }))];
  const report: TransferReport = { ref: local.ref, remote: remoteName(remote), digest: local.manifestDigest, blobs: blobs.length, transferredBlobs: 0, skippedBlobs: 0, bytesTransferred: 0, bytesTotal: manifestBytes.length };
  for (const { d, what } of blobs) {
    report.bytesTotal += d.size;
    const url = c.url(`blobs/${d.digest}`);
    const head = await c.request(url, { method: 'HEAD', maxBytes: 0 });
    if (head.status === 200) {
      const len = Number(head.headers.get('content-length') ?? d.size);
      if (len !== d.size) throw new RegistryError(`HEAD ${url} (${what}): the registry has ${len} bytes under this digest, expected ${d.size}`);
      report.skippedBlobs++;
      continue;
    }
    if (head.status !== 404) throw new RegistryError(`HEAD ${url} (${what}): HTTP ${head.status} ${head.statusText}`);
    const bytes = await layout.readBlob(d, `${name}: ${what}`);
    const start = await c.request(c.url('blobs/uploads/'), { method: 'POST', maxBytes: 64 * 1024 });
    const location = start.headers.get('location');
    if (start.status !== 202 || !location) throw new RegistryError(`POST ${c.url('blobs/uploads/')}: HTTP ${start.status} ${start.statusText}${location ? '' : ', no Location header'} (starting the upload of ${what} ${d.digest})`);
    const put = new URL(location, remote.base);
    put.searchParams.set('digest', d.digest);
    const done = await c.request(put.href, { method: 'PUT', headers: { 'Content-Type': 'application/octet-stream' }, body: bytes, maxBytes: 64 * 1024 });
    if (done.status !== 201) throw new RegistryError(`PUT ${put.origin}${put.pathname} (${what} ${d.digest}): HTTP ${done.status} ${done.statusText} ${Buffer.from(done.body).toString('utf8').slice(0, 200)}`);
    report.transferredBlobs++;
    report.bytesTransferred += bytes.length;
  }
  const murl = c.url(`manifests/${remote.tag}`);
  const res = await c.request(murl, { method: 'PUT', headers: { 'Content-Type': MT_MANIFEST }, body: manifestBytes, maxBytes: 64 * 1024 });
  if (res.status !== 201) throw new RegistryError(`PUT ${murl}: HTTP ${res.status} ${res.statusText} ${Buffer.from(res.body).toString('utf8').slice(0, 200)}`);
  const echoed = res.headers.get('docker-content-digest');
  if (echoed && echoed !== local.manifestDigest) throw new RegistryError(`PUT ${murl}: the registry stored the manifest as ${echoed}, not ${local.manifestDigest}`);
  report.bytesTransferred += manifestBytes.length;
  return report;
}

export async function pullSnapshot(layout: Layout, registryRef: string, localRef: string | undefined, opts: RegistryOptions & { force?: boolean }, checkState: (bytes: Uint8Array) => void): Promise<TransferReport> {
  const remote = parseRemoteRef(registryRef);
  const ref = checkRef(localRef ?? remote.tag);
  const c = new Client(remote, opts.timeoutMs ?? DEFAULT_REGISTRY_TIMEOUT_MS);
  const name = remoteName(remote);
  const refuseExisting = (index: IndexEntry[]) => {
    const old = index.find((e) => e.ref === ref);
    if (old && !opts.force) throw new SnapshotStoreError(`${layout.dir}: snapshot '${ref}' already exists (${old.digest}); pull into another name or with force to replace it`);
  };
  refuseExisting(await layout.readIndex()); // before any network traffic

  // The whole pull holds the lock, so gc cannot remove a blob we counted as present.
  return layout.withLock(async () => {
    const index = await layout.readIndex();
    refuseExisting(index);
    const murl = c.url(`manifests/${remote.tag}`);
    const res = await c.request(murl, { headers: { Accept: MT_MANIFEST }, maxBytes: MAX_MANIFEST_BYTES });
    if (res.status === 404) throw new RegistryError(`GET ${murl}: ${name} not found (HTTP 404)`);
    if (res.status !== 200) throw new RegistryError(`GET ${murl}: HTTP ${res.status} ${res.statusText}`);
    c.bytes += res.body.length;
    const manifestBytes = res.body;
    const digest = sha256(manifestBytes);
    const echoed = res.headers.get('docker-content-digest');
    if (echoed && echoed !== digest) throw new RegistryError(`GET ${murl}: manifest hashes to ${digest}, the registry says ${echoed}`);
    let manifest: SnapshotManifest;
    try {
      manifest = parseManifest(manifestBytes, `${name}: manifest ${digest}`);
    } catch (e) {
      throw new RegistryError((e as Error).message);
    }
    const report: TransferReport = { ref, remote: name, digest, blobs: 1 + manifest.layers.length, transferredBlobs: 0, skippedBlobs: 0, bytesTransferred: 0, bytesTotal: manifestBytes.length };

    const staging = await layout.newStaging();
    try {
      /** The blob from this store when it has it, else from the registry (then staged). */
      const fetch = async (d: Descriptor, what: string): Promise<Uint8Array | null> => {
        report.bytesTotal += d.size;
        if ((await layout.blobSize(d.digest)) === d.size || staging.has(d.digest)) {
          report.skippedBlobs++;
          return null;
        }
        const bytes = await c.getBlob(d, what);
        await staging.put(d.digest, bytes);
        report.transferredBlobs++;
        return bytes;
      };
      const configBytes = (await fetch(manifest.config, 'config')) ?? (await layout.readBlob(manifest.config, `${name}: config (already in the store)`));
      try {
        parseConfig(configBytes, `${name}: config ${manifest.config.digest}`, manifest);
      } catch (e) {
        throw new RegistryError((e as Error).message);
      }
      const stateLayer = manifest.layers[0]!;
      const stateBytes = (await fetch(stateLayer, 'state')) ?? (await layout.readBlob(stateLayer, `${name}: state (already in the store)`));
      try {
        checkState(stateBytes);
      } catch (e) {
        throw new RegistryError(`${name}: state blob ${stateLayer.digest}: ${(e as Error).message}`);
      }
      for (const l of manifest.layers.slice(1)) await fetch(l, 'memory chunk');
      report.bytesTransferred = c.bytes;
      await staging.put(digest, manifestBytes);
      await staging.commit();
      const entry: IndexEntry = { mediaType: MT_MANIFEST, artifactType: ARTIFACT_TYPE, digest, size: manifestBytes.length, ref };
      await layout.writeIndex([...index.filter((e) => e.ref !== ref), entry].sort((x, y) => (x.ref < y.ref ? -1 : x.ref > y.ref ? 1 : 0)));
      return report;
    } finally {
      await staging.discard();
    }
  });
}
