/** Text helpers for panes: blessed tag escaping and width fitting that ignores tags. */

/** Escapes blessed tag braces in text that comes from the guest or the user. */
export const esc = (s: string): string => s.replace(/[{}]/g, (c) => (c === '{' ? '{open}' : '{close}'));

/** Visible length: tags like {bold} and {/red-fg} take no columns, {open}/{close} take one. */
export function visibleLength(s: string): number {
  return s.replace(/\{(open|close)\}/g, 'x').replace(/\{\/?[a-z0-9-]*\}/gi, '').length;
}

/** Cuts a tagged line to `width` visible columns (tags kept, closed with {/}). */
export function fit(s: string, width: number): string {
  if (visibleLength(s) <= width) return s;
  let out = '';
  let seen = 0;
  for (let i = 0; i < s.length && seen < width; ) {
    const tag = /^\{(\/?[a-z0-9-]*)\}/i.exec(s.slice(i));
    if (tag) {
      out += tag[0];
      if (tag[1] === 'open' || tag[1] === 'close') seen++;
      i += tag[0].length;
      continue;
    }
    out += s[i];
    seen++;
    i++;
  }
  return out + '{/}';
}

/** "0x00000000000ffff0" -> "000ffff0" (8 digits when it fits in 32 bits, else 16). */
export function shortHex(h: string): string {
  const digits = h.replace(/^0x/, '');
  const v = BigInt(`0x${digits || '0'}`);
  return v <= 0xffff_ffffn ? v.toString(16).padStart(8, '0') : v.toString(16).padStart(16, '0');
}

export const pad = (s: string, n: number): string => (s.length >= n ? s : s + ' '.repeat(n - s.length));

/** Strips blessed tags (for tests and plain captures). */
export const plain = (s: string): string => s.replace(/\{(\/?[a-z0-9-]*)\}/gi, (_m, t: string) => (t === 'open' ? '{' : t === 'close' ? '}' : ''));
