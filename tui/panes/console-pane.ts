/** Consoles: COM1, debugcon, and VM consoles when a hypervisor runs guests; `o` switches. */
import type { PaneRenderer } from './pane.js';
import { errorLines } from './pane.js';
import { esc } from '../text.js';

export const consolePane: PaneRenderer = {
  id: 'console',
  render(snap, ui) {
    const err = errorLines(snap, 'consoles');
    const all = snap?.consoles?.consoles ?? [];
    const c = all.find((x) => x.id === ui.consoleId) ?? all[0];
    if (err || !c) return { title: 'Console', lines: err ?? [], follow: 'tail' };
    // Terminal control bytes from the guest would wreck the screen: show them as dots.
    const text = c.text.replace(/\r\n/g, '\n').replace(/\r/g, '\n').replace(/[\x00-\x08\x0b-\x1f\x7f]/g, '.');
    const lines = text.split('\n');
    if (lines[lines.length - 1] === '') lines.pop();
    const others = all.length > 1 ? ` (o: ${all.length} consoles)` : '';
    return { title: `Console ${c.label}${others}`, lines: lines.map(esc), follow: 'tail' };
  },
};
