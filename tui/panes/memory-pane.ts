/** Memory: hex + ASCII of physical or virtual memory at the goto address (width adapts to the pane). */
import type { PaneRenderer } from './pane.js';
import { errorLines } from './pane.js';
import { esc } from '../text.js';

/** Bytes per row that fit: address + 3 columns per byte + 1 per ASCII char. */
export function memoryRowBytes(width: number): number {
  for (const n of [16, 8, 4]) if (8 + 1 + n * 3 + 1 + n <= width) return n;
  return 4;
}

export const memoryPane: PaneRenderer = {
  id: 'memory',
  render(snap, ui, width) {
    const m = snap?.memory;
    const err = errorLines(snap, 'memory');
    const title = `Memory ${ui.memory.space} 0x${ui.memory.address.toString(16)}`;
    if (err || !m) return { title, lines: err ?? [], follow: 'top' };
    const n = memoryRowBytes(width);
    const lines: string[] = [];
    for (let i = 0; i < m.bytes.length; i += n) {
      const addr = BigInt(m.address) + BigInt(i);
      const chunk = m.bytes.slice(i, i + n);
      const hexes = chunk.map((b) => (b === null ? '{gray-fg}??{/gray-fg}' : b.toString(16).padStart(2, '0'))).join(' ');
      const ascii = chunk.map((b) => (b === null ? ' ' : b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : '.')).join('');
      const a = addr <= 0xffff_ffffn ? addr.toString(16).padStart(8, '0') : addr.toString(16).padStart(16, '0');
      lines.push(`{cyan-fg}${a}{/cyan-fg} ${hexes} ${esc(ascii)}`);
    }
    const unmapped = m.pages?.filter((p) => p.physical === null).length ?? 0;
    return { title: unmapped ? `${title} (${unmapped} page(s) unmapped)` : title, lines, follow: 'top' };
  },
};
