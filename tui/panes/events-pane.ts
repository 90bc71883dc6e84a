/** Events log: exceptions, interrupts, hlt/wake, ipi, exits; newest at the bottom. */
import type { PaneRenderer } from './pane.js';
import { errorLines } from './pane.js';
import { esc } from '../text.js';

const KIND_COLOR: Record<string, string> = { exception: 'red-fg', 'triple-fault': 'red-fg', exit: 'magenta-fg', 'vm-exit': 'magenta-fg', interrupt: 'cyan-fg', ipi: 'blue-fg', hlt: 'yellow-fg', wake: 'yellow-fg', mwait: 'yellow-fg' };

export const eventsPane: PaneRenderer = {
  id: 'events',
  render(snap) {
    const e = snap?.events;
    const err = errorLines(snap, 'events');
    if (err || !e) return { title: 'Events', lines: err ?? [], follow: 'tail' };
    const lines = e.events.map((ev) => {
      const color = KIND_COLOR[ev.kind] ?? 'white-fg';
      return `{gray-fg}${ev.atMs.toFixed(3)}{/gray-fg} ${ev.cpu !== null ? `cpu${ev.cpu} ` : ''}{${color}}${esc(ev.kind)}{/${color}} ${esc(ev.detail)}`;
    });
    const total = Object.entries(e.countsByKind).filter(([k]) => k !== 'debugcon').reduce((n, [, c]) => n + c, 0);
    return { title: `Events (${total})`, lines, follow: 'tail' };
  },
};
