/** Boot timeline: stages and POST codes (name and severity from the POST table), then firmware containers. */
import type { PaneRenderer } from './pane.js';
import { errorLines } from './pane.js';
import { esc } from '../text.js';

const SEVERITY_COLOR = { progress: 'green-fg', error: 'yellow-fg', fatal: 'red-fg' } as const;

export const timelinePane: PaneRenderer = {
  id: 'timeline',
  render(snap) {
    const t = snap?.timeline;
    const err = errorLines(snap, 'timeline');
    if (err || !t) return { title: 'Boot timeline', lines: err ?? ['waiting for the machine...'], follow: 'tail' };
    const lines: string[] = [];
    const header = (st: (typeof t.stages)[number]): string => {
      const dur = st.endMs === null ? 'running' : `${(st.endMs - st.startMs).toFixed(3)} ms`;
      return `{cyan-fg}${esc(st.name)}{/cyan-fg} {gray-fg}@${st.startMs.toFixed(3)} ${dur}{/gray-fg}`;
    };
    const pendingStages = [...t.stages];
    // Stages begin at the POST code that starts them; print each header just before its code.
    if (t.totalPostCodes === t.postCodes.length && pendingStages[0]) lines.push(header(pendingStages.shift()!));
    const firstShown = t.postCodes[0]?.atMs ?? Infinity;
    while (pendingStages[0] && pendingStages[0].startMs < firstShown) pendingStages.shift();
    for (const p of t.postCodes) {
      while (pendingStages[0] && pendingStages[0].startMs <= p.atMs && pendingStages[0].codes[0] === p.hex) lines.push(header(pendingStages.shift()!));
      const color = SEVERITY_COLOR[p.severity];
      lines.push(` {${color}}${p.hex}{/${color}} ${esc(p.name)}${p.severity !== 'progress' ? ` {${color}}${p.severity}{/${color}}` : ''} {gray-fg}${p.atMs.toFixed(3)}{/gray-fg}`);
    }
    // Stages without POST codes (the hypervisor after the handoff) come last.
    for (const st of pendingStages) lines.push(header(st));
    if (t.firmwareContainers.length > 0) {
      lines.push('{cyan-fg}firmware containers{/cyan-fg}');
      for (const c of t.firmwareContainers) {
        const color = c.status === 'pass' ? 'green-fg' : c.status === 'fixed' ? 'yellow-fg' : c.status === 'pending' || c.status === 'running' ? 'white-fg' : 'red-fg';
        lines.push(` ${esc(c.name)} {${color}}${c.status}{/${color}}${c.findings.length ? ` {gray-fg}${c.findings.length} finding(s){/gray-fg}` : ''}`);
        for (const f of c.findings) lines.push(`   ${f.severity === 'error' || f.severity === 'critical' ? '{red-fg}' : f.severity === 'warning' ? '{yellow-fg}' : '{gray-fg}'}${f.severity}: ${esc(f.message)}{/}`);
      }
    }
    return { title: `Boot timeline ${t.last ? t.last.hex : '--'}`, lines, follow: 'tail' };
  },
};
