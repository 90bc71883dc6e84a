/** Which fields of two state records differ, as paths ("$.cpu0.rip"), for `snapshot diff`. */
import type { StateValue } from '../../machine/state.js';

export function stateDiffPaths(a: StateValue, b: StateValue, limit = 100): string[] {
  const out: string[] = [];
  const walk = (x: StateValue | undefined, y: StateValue | undefined, path: string): void => {
    if (out.length >= limit) return;
    if (x instanceof Uint8Array || y instanceof Uint8Array) {
      if (!(x instanceof Uint8Array && y instanceof Uint8Array && view(x).equals(view(y)))) out.push(path);
      return;
    }
    if (Array.isArray(x) && Array.isArray(y)) {
      if (x.length !== y.length) out.push(`${path} (length ${x.length} -> ${y.length})`);
      else x.forEach((v, i) => walk(v, y[i], `${path}[${i}]`));
      return;
    }
    if (isRecord(x) && isRecord(y)) {
      const keys = [...new Set([...Object.keys(x), ...Object.keys(y)])].sort();
      for (const k of keys) walk(x[k], y[k], `${path}.${k}`);
      return;
    }
    if (x !== y) out.push(path);
  };
  walk(a, b, '$');
  return out;
}

function isRecord(v: StateValue | undefined): v is { [key: string]: StateValue } {
  return v !== null && v !== undefined && typeof v === 'object' && !Array.isArray(v) && !(v instanceof Uint8Array);
}

const view = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength);
