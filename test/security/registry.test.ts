/**
 * A hostile or broken OCI registry (issue 11): a registry that never answers
 * is bounded by the timeout, a blob that never ends by its descriptor's size,
 * and malformed documents are refused with the document and field named.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createHash } from 'node:crypto';
import { registryFwCfgFiles } from '../../machine/platform/oci-registry.js';
import { MT_MANIFEST } from '../../machine/platform/oci-documents.js';

let server: Server | null = null;
const open = new Set<ServerResponse>();

afterEach(async () => {
  for (const r of open) r.destroy();
  open.clear();
  await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
  server = null;
});

type Route = (path: string, res: ServerResponse) => void;

async function fakeRegistry(route: Route): Promise<string> {
  server = createServer((req, res) => {
    open.add(res);
    res.on('close', () => open.delete(res));
    route(req.url ?? '/', res);
  });
  await new Promise<void>((r) => server!.listen(0, '127.0.0.1', () => r()));
  return `http://127.0.0.1:${(server!.address() as AddressInfo).port}/firmament`;
}

const sha = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const json = (res: ServerResponse, v: unknown): void => {
  res.setHeader('content-type', 'application/json');
  res.end(JSON.stringify(v));
};

/** One repository firmament/a with a manifest whose config blob is served by `blob`. */
function oneImage(blob: (res: ServerResponse) => void, configSize = 16): Route {
  const config = { mediaType: 'application/vnd.oci.image.config.v1+json', digest: `sha256:${'a'.repeat(64)}`, size: configSize };
  const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MT_MANIFEST, config, layers: [] }));
  return (path, res) => {
    if (path.startsWith('/v2/_catalog')) return json(res, { repositories: ['firmament/a'] });
    if (path.startsWith('/v2/firmament/a/manifests/')) {
      res.setHeader('docker-content-digest', sha(manifest));
      return void res.end(manifest);
    }
    if (path.startsWith('/v2/firmament/a/blobs/')) return blob(res);
    res.statusCode = 404;
    res.end();
  };
}

describe('registry client against a hostile registry', () => {
  it('gives up on a registry that never answers once the timeout is spent', async () => {
    const url = await fakeRegistry(() => {
      /* accepts the request and never answers */
    });
    await expect(registryFwCfgFiles(url, { timeoutMs: 300 })).rejects.toThrow(/no complete answer within .*--timeout 0\.3 s/);
  });

  it('gives up on a blob that trickles in forever once the timeout is spent', async () => {
    const url = await fakeRegistry(
      oneImage((res) => {
        res.write('x');
      }, 1000),
    );
    // 2 s, not less: on a loaded machine the index and manifest requests alone can spend a short
    // budget, and the error is then "ran out before this request" (also right, but not this case).
    await expect(registryFwCfgFiles(url, { timeoutMs: 2000 })).rejects.toThrow(/no complete answer/);
  });

  it('cuts off a blob that keeps coming past its descriptor size', async () => {
    let sent = 0;
    const url = await fakeRegistry(
      oneImage((res) => {
        const chunk = Buffer.alloc(64 * 1024);
        const pump = (): void => {
          while (!res.destroyed && res.write(chunk)) sent += chunk.length;
          if (!res.destroyed) res.once('drain', pump);
        };
        pump();
      }),
    );
    await expect(registryFwCfgFiles(url, { timeoutMs: 30_000 })).rejects.toThrow(/passed 16 bytes|Content-Length/);
    // Far less than an endless blob: the client stopped reading almost at once.
    expect(sent).toBeLessThan(64 * 1024 * 1024);
  });

  it('refuses a declared Content-Length above the descriptor size without reading it', async () => {
    const url = await fakeRegistry(
      oneImage((res) => {
        res.setHeader('content-length', String(1 << 30));
        res.write('x');
      }),
    );
    await expect(registryFwCfgFiles(url, { timeoutMs: 30_000 })).rejects.toThrow(/Content-Length 1073741824/);
  });

  it('names the field of a malformed manifest', async () => {
    const bad = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MT_MANIFEST, config: { mediaType: 'x', digest: 'sha256:../../etc/passwd', size: 1 }, layers: [] }));
    const url = await fakeRegistry((path, res) => {
      if (path.startsWith('/v2/_catalog')) return json(res, { repositories: ['firmament/a'] });
      res.end(bad);
    });
    await expect(registryFwCfgFiles(url, { timeoutMs: 30_000 })).rejects.toThrow(/firmament\/a:latest manifest: config\.digest: expected sha256:/);
  });

  it('refuses repository names that are not names', async () => {
    const url = await fakeRegistry((_path, res) => json(res, { repositories: ['firmament/../../x'] }));
    await expect(registryFwCfgFiles(url, { timeoutMs: 30_000 })).rejects.toThrow(/_catalog.*repositories\.0: not a repository name/);
  });
});
