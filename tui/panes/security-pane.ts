/** Security: the anomalies the security service raised (one per episode), newest last; Enter jumps to the VM. */
import type { PaneRenderer } from './pane.js';
import type { AnomalyNotice } from '../../machine/debug/protocol.js';
import { esc } from '../text.js';

const SEVERITY_COLOR: Record<AnomalyNotice['severity'], string> = { low: 'yellow-fg', medium: 'magenta-fg', high: 'red-fg' };

export function anomalyLines(a: AnomalyNotice, selected: boolean): string[] {
  const c = SEVERITY_COLOR[a.severity];
  const head = `${selected ? '{inverse}' : ''}#${a.id} ${a.atMs.toFixed(0)}ms ${esc(a.vm)}${selected ? '{/inverse}' : ''} {${c}}${a.severity}{/${c}}`;
  return [head, `  ${esc(a.description)}`, `  {gray-fg}${esc(a.metric)} rip ${esc(a.rip)}{/gray-fg}`];
}

export const securityPane: PaneRenderer = {
  id: 'security',
  render(_snap, ui) {
    const s = ui.security;
    const n = s.anomalies.length;
    const title = n > 0 ? `Security (${n} anomal${n === 1 ? 'y' : 'ies'})` : 'Security';
    if (s.unavailable !== null) return { title, lines: [`{gray-fg}${esc(s.unavailable)}{/gray-fg}`], follow: 'top' };
    if (n === 0) return { title, lines: ['{green-fg}no anomalies{/green-fg}'], follow: 'top' };
    const lines: string[] = [];
    let anchor = 0;
    s.anomalies.forEach((a, i) => {
      if (i === s.selected) anchor = lines.length;
      lines.push(...anomalyLines(a, i === s.selected));
    });
    return s.selected < 0 ? { title, lines, follow: 'tail' } : { title, lines, follow: 'anchor', anchor };
  },
};
