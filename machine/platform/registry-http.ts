/**
 * One HTTP request to an OCI registry with a deadline and a size cap, so a
 * hung registry cannot hang us and an endless one cannot exhaust memory.
 * The deadline covers the whole exchange, body included.
 */
import { RegistryError } from './registry-error.js';

export interface RegistryRequest {
  method?: 'GET' | 'HEAD' | 'POST' | 'PUT';
  headers?: Record<string, string>;
  body?: Uint8Array;
  /** Whole request, connect to last body byte. */
  timeoutMs: number;
  /** Largest response body accepted; more is an error, not a truncation. */
  maxBytes: number;
}

export interface RegistryResponse {
  status: number;
  statusText: string;
  headers: Headers;
  body: Uint8Array;
}

export const DEFAULT_REGISTRY_TIMEOUT_MS = 30_000;

export async function registryRequest(url: string, req: RegistryRequest): Promise<RegistryResponse> {
  const method = req.method ?? 'GET';
  const what = `${method} ${url}`;
  const ac = new AbortController();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    ac.abort();
  }, req.timeoutMs);
  try {
    let res: Response;
    try {
      res = await fetch(url, { method, headers: req.headers ?? {}, ...(req.body ? { body: req.body as Uint8Array<ArrayBuffer> } : {}), signal: ac.signal, redirect: 'follow' });
    } catch (e) {
      throw new RegistryError(timedOut ? `${what}: no answer within ${req.timeoutMs} ms (timed out)` : `${what}: ${causeOf(e)}`);
    }
    const declared = Number(res.headers.get('content-length') ?? NaN);
    if (method !== 'HEAD' && Number.isFinite(declared) && declared > req.maxBytes) {
      ac.abort();
      throw new RegistryError(`${what}: response of ${declared} bytes exceeds the limit of ${req.maxBytes} bytes`);
    }
    const chunks: Uint8Array[] = [];
    let total = 0;
    if (res.body && method !== 'HEAD') {
      const reader = res.body.getReader();
      try {
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          total += value.length;
          if (total > req.maxBytes) {
            ac.abort();
            throw new RegistryError(`${what}: response body exceeds the limit of ${req.maxBytes} bytes`);
          }
          chunks.push(value);
        }
      } catch (e) {
        if (e instanceof RegistryError) throw e;
        throw new RegistryError(timedOut ? `${what}: body not complete within ${req.timeoutMs} ms (timed out after ${total} bytes)` : `${what}: reading the body: ${causeOf(e)}`);
      }
    } else if (res.body) {
      await res.body.cancel();
    }
    return { status: res.status, statusText: res.statusText, headers: res.headers, body: concat(chunks, total) };
  } finally {
    clearTimeout(timer);
  }
}

function concat(chunks: Uint8Array[], total: number): Uint8Array {
  if (chunks.length === 1) return chunks[0]!;
  const out = new Uint8Array(total);
  let o = 0;
  for (const c of chunks) {
    out.set(c, o);
    o += c.length;
  }
  return out;
}

/** undici hides the useful part ("ECONNREFUSED 127.0.0.1:5000") in e.cause. */
function causeOf(e: unknown): string {
  const err = e as Error & { cause?: { message?: string; code?: string } };
  const cause = err.cause?.message ?? err.cause?.code;
  return cause ? `${err.message} (${cause})` : err.message;
}
