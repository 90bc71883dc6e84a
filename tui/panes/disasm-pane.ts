/** Disassembly around RIP (or a chosen address) in the current mode's width; breakpoints marked. */
import type { PaneRenderer } from './pane.js';
import { errorLines } from './pane.js';
import { esc, shortHex } from '../text.js';

export const disasmPane: PaneRenderer = {
  id: 'disasm',
  render(snap, ui) {
    const d = snap?.disassembly;
    const err = errorLines(snap, 'disassembly');
    if (err || !d) return { title: 'Disassembly', lines: err ?? [], follow: 'top' };
    const bpAddrs = new Set((snap?.status.breakpoints ?? []).filter((b) => b.kind === 'linear').map((b) => BigInt(b.text.split(' ')[1] ?? '0')));
    let anchor = 0;
    const lines = d.lines.map((l, i) => {
      const addr = BigInt(l.address);
      if (l.current || (ui.disasmAddress !== null && addr === ui.disasmAddress)) anchor = i;
      const mark = bpAddrs.has(addr) ? '{red-fg}●{/red-fg}' : ' ';
      const bytes = l.bytes.length > 12 ? `${l.bytes.slice(0, 11)}+` : l.bytes.padEnd(12);
      const text = `${shortHex(l.address)} ${bytes} ${esc(l.text)}`;
      return l.current ? `${mark}{inverse}▶${text}{/inverse}` : `${mark} ${text}`;
    });
    if (lines.length === 0) lines.push('{gray-fg}(no readable code here){/gray-fg}');
    const where = ui.disasmAddress === null ? 'RIP' : `@${shortHex(d.address)}`;
    return { title: `Disassembly ${d.bits}-bit ${where}`, lines, follow: 'anchor', anchor };
  },
};
