/** Page walk: every level of a virtual address's translation, the fault at its level. */
import type { PaneRenderer } from './pane.js';
import { errorLines } from './pane.js';
import { esc, shortHex } from '../text.js';

export const pagewalkPane: PaneRenderer = {
  id: 'pagewalk',
  render(snap, ui) {
    if (ui.walkAddress === null) return { title: 'Page walk', lines: ['press {bold}t{/bold} and enter a virtual address'], follow: 'top' };
    const w = snap?.pageWalk;
    const err = errorLines(snap, 'pageWalk');
    if (err || !w) return { title: 'Page walk', lines: err ?? [], follow: 'top' };
    const lines: string[] = [];
    const res = w.result;
    const summary = res.ok
      ? `{green-fg}-> PA ${shortHex(res.physical)}{/green-fg} ${res.pageSize >= 1 << 20 ? `${res.pageSize >> 20}M` : `${res.pageSize >> 10}K`} page ${res.writable ? 'RW' : 'RO'}${res.user ? ' U' : ' S'}${res.executable ? ' X' : ' NX'}`
      : `{red-fg}fault at ${res.faultLevel ?? '-'}: ${esc(res.reason)} (err ${res.errorCode}){/red-fg}`;
    lines.push(`${w.format} CR3 ${shortHex(w.cr3)} ${summary}`);
    for (const l of w.levels) {
      const idx = `${l.level}[${l.index.toString().padStart(3, '0')}]`.padEnd(9);
      const next = l.next ? ` -> ${shortHex(l.next)}` : '';
      const line = `${idx} @${shortHex(l.entryAddress)} ${l.entry.replace(/^0x/, '')} ${l.flagText}${next}`;
      lines.push(l.fault ? `{red-fg}${line}  ✗ ${esc(l.fault)}{/red-fg}` : line);
    }
    if (w.format === 'none') lines.push('paging off: linear = physical');
    if (w.ept) {
      // A hypervisor guest: the addresses above are guest-physical; the EPT maps the final one.
      lines.push(`{cyan-fg}EPT GPA ${shortHex(w.ept.guestPhysical)} -> ${w.ept.hostPhysical ? `HPA ${shortHex(w.ept.hostPhysical)}` : 'no mapping'}{/cyan-fg}`);
      for (const l of w.ept.levels) lines.push(`${`${l.level}[${l.index.toString().padStart(3, '0')}]`.padEnd(13)} @${shortHex(l.entryAddress)} ${l.entry.replace(/^0x/, '')} ${l.flagText}`);
      if (w.ept.fault) lines.push(`{red-fg}${esc(w.ept.fault)}{/red-fg}`);
    }
    return { title: `Page walk ${shortHex(w.virtual)}`, lines, follow: 'top' };
  },
};
