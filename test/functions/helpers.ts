/** Shared set-up for the function service tests: built images, a temporary store, HTTP helpers. */
import http from 'node:http';
import { mkdtempSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { buildImages } from '../../tools/build-images.mjs';

export interface Built {
  runtime: string;
  functions: Record<string, string>;
}

export async function built(): Promise<Built> {
  const out = await buildImages({ quiet: true });
  return { runtime: out.guests['function-runtime']!, functions: out.functions };
}

export const tempStore = (): string => mkdtempSync(path.join(os.tmpdir(), 'fm-fn-store-'));

export const elfOf = (b: Built, name: string): Uint8Array => new Uint8Array(readFileSync(b.functions[name]!));

export interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
  json: Record<string, unknown>;
}

export async function request(base: string, method: string, p: string, body?: Uint8Array | string, headers: Record<string, string> = {}): Promise<Reply> {
  const r = await fetch(`${base}${p}`, { method, headers, ...(body !== undefined ? { body: typeof body === 'string' ? body : Buffer.from(body) } : {}) });
  const text = await r.text();
  let json: Record<string, unknown> = {};
  try {
    json = JSON.parse(text) as Record<string, unknown>;
  } catch {
    // not JSON (metrics)
  }
  const h: http.IncomingHttpHeaders = {};
  r.headers.forEach((v, k) => (h[k] = v));
  return { status: r.status, headers: h, text, json };
}

/** A stand-in external service on loopback: records each request, acknowledges it with 202. */
export async function externalService(): Promise<{ url: string; requests: { headers: http.IncomingHttpHeaders; body: string }[]; next(): Promise<{ headers: http.IncomingHttpHeaders; body: string }>; close(): Promise<void> }> {
  const requests: { headers: http.IncomingHttpHeaders; body: string }[] = [];
  const waiting: ((r: { headers: http.IncomingHttpHeaders; body: string }) => void)[] = [];
  let taken = 0;
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const r = { headers: req.headers, body: Buffer.concat(chunks).toString('utf8') };
      requests.push(r);
      waiting.shift()?.(r);
      res.writeHead(202);
      res.end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}/ext`,
    requests,
    next() {
      const i = taken++;
      if (requests[i]) return Promise.resolve(requests[i]);
      return new Promise((r) => waiting.push(r));
    },
    close: () => new Promise((r) => server.close(() => r())),
  };
}
