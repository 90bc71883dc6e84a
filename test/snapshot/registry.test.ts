/**
 * Snapshot push/pull over the OCI distribution API: against Debian's
 * docker-registry on loopback (dedup in both directions, byte counts), and
 * against small misbehaving servers (hung, endless, tampered, foreign
 * artifacts), which must end in a clear error with the store untouched.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { Readable, pipeline } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RegistryError } from '../../machine/platform/registry-error.js';
import { SnapshotStore } from '../../vmm/snapshot/index.js';
import { freePort, startRegistry, type LoopbackRegistry } from '../support/registry.js';
import { blobFiles, chunkBlobPath, memoryEquals, rewriteSnapshot, storeFiles, syntheticVm, tempStoreDir } from './helpers.js';

const hasDockerRegistry = spawnSync('sh', ['-c', 'command -v docker-registry']).status === 0;
if (!hasDockerRegistry) console.warn('SKIPPED: snapshot push/pull against a real registry needs Debian\'s docker-registry (apt-get install docker-registry; CI installs it)');

async function refusal(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected a refusal');
}

const blobSizes = (dir: string, digests: string[]) => digests.reduce((n, h) => n + readFileSync(path.join(dir, 'blobs/sha256', h)).length, 0);

describe.skipIf(!hasDockerRegistry)('snapshot push/pull with docker-registry on loopback', () => {
  let reg: LoopbackRegistry;
  let src: SnapshotStore;
  beforeAll(async () => {
    reg = await startRegistry();
    src = SnapshotStore.open(tempStoreDir());
    await src.save('vm1', syntheticVm(1));
    await src.save('vm2', syntheticVm(2));
  });
  afterAll(() => reg?.stop());

  it('push uploads every blob once; a second snapshot uploads only the blobs the registry lacks', async () => {
    const first = await src.push('vm1', `${reg.url}/firmament/snapshots`);
    expect(first).toMatchObject({ remote: `${reg.url}/firmament/snapshots:vm1`, blobs: 9, transferredBlobs: 9, skippedBlobs: 0 });
    expect(first.bytesTransferred).toBe(first.bytesTotal);
    const second = await src.push('vm2', `${reg.url}/firmament/snapshots:vm2`);
    // 3 kernel chunks are already there (HEAD answered 200).
    expect(second).toMatchObject({ transferredBlobs: 6, skippedBlobs: 3 });
    expect(second.bytesTransferred).toBeLessThan(second.bytesTotal);
    const tags = (await (await fetch(`${reg.url}/v2/firmament/snapshots/tags/list`)).json()) as { tags: string[] };
    expect(tags.tags.sort()).toEqual(['vm1', 'vm2']);
    // Pushing again moves nothing but the manifest.
    const again = await src.push('vm1', `${reg.url}/firmament/snapshots:vm1`);
    expect(again.transferredBlobs).toBe(0);
  });

  it('pull into an empty store gives the same snapshot; pulling the second fetches only its new blobs', async () => {
    const dir = tempStoreDir();
    const dst = SnapshotStore.open(dir);
    const a = await dst.pull(`${reg.url}/firmament/snapshots:vm1`);
    expect(a).toMatchObject({ ref: 'vm1', transferredBlobs: 9, skippedBlobs: 0 });
    expect(a.digest).toBe((await src.list())[0]!.digest);
    const back = await dst.load('vm1');
    expect(back.state).toEqual(syntheticVm(1).state);
    expect(memoryEquals(back.memory, syntheticVm(1).memory)).toBe(true);
    const before = blobFiles(dir);
    expect(before).toHaveLength(10);

    const b = await dst.pull(`${reg.url}/firmament/snapshots:vm2`, 'second');
    const added = blobFiles(dir).filter((f) => !before.includes(f));
    expect(added).toHaveLength(7); // 4 chunks, state, config, manifest
    expect(b).toMatchObject({ ref: 'second', transferredBlobs: 6, skippedBlobs: 3 });
    // Bytes received are exactly the bytes of the blobs the store lacked.
    expect(b.bytesTransferred).toBe(blobSizes(dir, added));
    expect(b.bytesTransferred).toBeLessThan(b.bytesTotal);
    expect((await dst.verify('second')).ok).toBe(true);
    expect((await dst.diff('vm1', 'second')).changedBytes).toBe((await src.diff('vm1', 'vm2')).changedBytes);
  });

  it('refuses to pull over an existing name unless forced, and a missing tag, leaving the store as it was', async () => {
    const dir = tempStoreDir();
    const dst = SnapshotStore.open(dir);
    await dst.pull(`${reg.url}/firmament/snapshots:vm1`);
    const before = storeFiles(dir);
    expect((await refusal(dst.pull(`${reg.url}/firmament/snapshots:vm2`, 'vm1'))).message).toMatch(/snapshot 'vm1' already exists/);
    const missing = await refusal(dst.pull(`${reg.url}/firmament/snapshots:nope`));
    expect(missing).toBeInstanceOf(RegistryError);
    expect(missing.message).toMatch(/snapshots:nope not found \(HTTP 404\)/);
    expect(storeFiles(dir)).toEqual(before);
    const forced = await dst.pull(`${reg.url}/firmament/snapshots:vm2`, 'vm1', { force: true });
    expect(forced.transferredBlobs).toBe(6);
    expect((await dst.load('vm1')).state).toEqual(syntheticVm(2).state);
  });

  it('never publishes a corrupt snapshot: a bad state record or a rotten chunk stops the push before the manifest', async () => {
    const dir = tempStoreDir();
    const s = SnapshotStore.open(dir);
    await s.save('bad-state', syntheticVm(5));
    rewriteSnapshot(dir, 'bad-state', { state: (b) => b.subarray(0, b.length - 1) }); // digests consistent, record truncated
    expect((await refusal(s.push('bad-state', `${reg.url}/firmament/broken`))).message).toMatch(/snapshot 'bad-state': state blob .*truncated/);
    await s.save('bad-chunk', syntheticVm(6));
    const chunk = chunkBlobPath(dir, 'bad-chunk', 0x10000);
    const bytes = readFileSync(chunk);
    bytes[0]! ^= 1;
    writeFileSync(chunk, bytes);
    expect((await refusal(s.push('bad-chunk', `${reg.url}/firmament/broken`))).message).toMatch(/snapshot 'bad-chunk': memory chunk: blob sha256:[0-9a-f]{64} is corrupt/);
    for (const tag of ['bad-state', 'bad-chunk']) {
      const r = await fetch(`${reg.url}/v2/firmament/broken/manifests/${tag}`, { headers: { Accept: 'application/vnd.oci.image.manifest.v1+json' } });
      expect(r.status).toBe(404);
    }
  });
});

/** A registry we control: serves given manifests and blobs, or misbehaves. */
async function fakeRegistry(handler: http.RequestListener): Promise<{ url: string; close: () => Promise<void> }> {
  const server = http.createServer(handler);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

/** Serves one stored snapshot as repo "fm/snap", tag "t", with optional changes on the way out. */
async function servingSnapshot(dir: string, ref: string, tamper: (kind: 'manifest' | 'blob', digest: string, bytes: Buffer) => Buffer = (_k, _d, b) => b) {
  const idx = JSON.parse(readFileSync(path.join(dir, 'index.json'), 'utf8')) as { manifests: { digest: string; annotations: Record<string, string> }[] };
  const entry = idx.manifests.find((m) => m.annotations['org.opencontainers.image.ref.name'] === ref)!;
  const blob = (d: string) => readFileSync(path.join(dir, 'blobs/sha256', d.slice(7)));
  return fakeRegistry((req, res) => {
    const url = req.url ?? '';
    if (url === '/v2/fm/snap/manifests/t') {
      const body = tamper('manifest', entry.digest, blob(entry.digest));
      res.writeHead(200, { 'Content-Type': 'application/vnd.oci.image.manifest.v1+json', 'Content-Length': body.length });
      return res.end(body);
    }
    const m = /^\/v2\/fm\/snap\/blobs\/(sha256:[0-9a-f]{64})$/.exec(url);
    if (m) {
      const body = tamper('blob', m[1]!, blob(m[1]!));
      res.writeHead(200, { 'Content-Length': body.length });
      return res.end(body);
    }
    res.writeHead(404).end();
  });
}

describe('snapshot pull from misbehaving registries: clear errors, store untouched', () => {
  let srcDir: string;
  beforeAll(async () => {
    srcDir = tempStoreDir();
    await SnapshotStore.open(srcDir).save('vm1', syntheticVm(1));
  });

  async function pullFails(url: string, opts: { timeoutMs?: number } = {}): Promise<Error> {
    const dir = tempStoreDir();
    const dst = SnapshotStore.open(dir);
    await dst.save('keep', syntheticVm(7));
    const before = storeFiles(dir);
    const e = await refusal(dst.pull(url, 'vm1', opts));
    expect(storeFiles(dir)).toEqual(before); // nothing overwritten, no staging left behind
    expect(await dst.names()).toEqual(['keep']);
    return e;
  }

  it('a registry that never answers is a timeout, not a hang', async () => {
    const hung = await fakeRegistry(() => {
      /* never responds */
    });
    try {
      const e = await pullFails(`${hung.url}/fm/snap:t`, { timeoutMs: 300 });
      expect(e).toBeInstanceOf(RegistryError);
      expect(e.message).toMatch(/GET http:\/\/127\.0\.0\.1:\d+\/v2\/fm\/snap\/manifests\/t: no answer within 300 ms \(timed out\)/);
    } finally {
      await hung.close();
    }
  });

  it('an endless response is cut at the size limit', async () => {
    const endless = await fakeRegistry((_req, res) => {
      res.writeHead(200, { 'Content-Type': 'application/vnd.oci.image.manifest.v1+json' });
      const forever = new Readable({
        read() {
          this.push(Buffer.alloc(64 * 1024, 0x7b));
        },
      });
      pipeline(forever, res, () => {});
    });
    try {
      const e = await pullFails(`${endless.url}/fm/snap:t`);
      expect(e.message).toMatch(/manifests\/t: response body exceeds the limit of 4194304 bytes/);
    } finally {
      await endless.close();
    }
  });

  it('a blob whose content does not match its digest', async () => {
    const reg = await servingSnapshot(srcDir, 'vm1', (kind, _d, b) => (kind === 'blob' && b.length === 65536 ? Buffer.concat([b.subarray(0, 100), Buffer.alloc(1, b[100]! ^ 1), b.subarray(101)]) : b));
    try {
      const e = await pullFails(`${reg.url}/fm/snap:t`);
      expect(e.message).toMatch(/GET .*\/v2\/fm\/snap\/blobs\/sha256:[0-9a-f]{64} \(memory chunk\): content hashes to sha256:[0-9a-f]{64}, not sha256:/);
    } finally {
      await reg.close();
    }
  });

  it('a blob longer than its descriptor says', async () => {
    const reg = await servingSnapshot(srcDir, 'vm1', (kind, _d, b) => (kind === 'blob' ? Buffer.concat([b, Buffer.alloc(1)]) : b));
    try {
      expect((await pullFails(`${reg.url}/fm/snap:t`)).message).toMatch(/exceeds the limit of \d+ bytes/);
    } finally {
      await reg.close();
    }
  });

  it('a state record with consistent digests but a bad CRC', async () => {
    const dir = tempStoreDir();
    await SnapshotStore.open(dir).save('vm1', syntheticVm(1));
    rewriteSnapshot(dir, 'vm1', {
      state: (b) => {
        const bad = Buffer.from(b);
        bad[bad.length - 2]! ^= 0x04;
        return bad;
      },
    });
    const reg = await servingSnapshot(dir, 'vm1');
    try {
      expect((await pullFails(`${reg.url}/fm/snap:t`)).message).toMatch(/fm\/snap:t: state blob sha256:[0-9a-f]{64}: snapshot: offset \d+: section \d+ CRC: CRC mismatch/);
    } finally {
      await reg.close();
    }
  });

  it('an OCI image that is not a Firmament snapshot', async () => {
    const reg = await servingSnapshot(srcDir, 'vm1', (kind, _d, b) => (kind === 'manifest' ? Buffer.from(b.toString().replace(/"artifactType":"[^"]+",/, '')) : b));
    try {
      expect((await pullFails(`${reg.url}/fm/snap:t`)).message).toMatch(/artifactType undefined: not a Firmament VM snapshot/);
    } finally {
      await reg.close();
    }
  });

  it('bad registry references and unreachable registries', async () => {
    const s = SnapshotStore.open(tempStoreDir());
    expect((await refusal(s.pull('not a url'))).message).toMatch(/not a URL \(expected http:\/\/HOST:PORT\/REPOSITORY\[:TAG\]/);
    expect((await refusal(s.pull('http://127.0.0.1:1/repo'))).message).toMatch(/give a tag/);
    expect((await refusal(s.pull('http://127.0.0.1:1/Repo:t'))).message).toMatch(/repository "Repo" is not a valid name/);
    const closed = await freePort();
    expect((await refusal(s.pull(`http://127.0.0.1:${closed}/repo:t`))).message).toMatch(/GET http:\/\/127\.0\.0\.1:\d+\/v2\/repo\/manifests\/t: fetch failed \(.*ECONNREFUSED/);
  });
});
