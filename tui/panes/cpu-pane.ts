/** CPU: general registers, RIP, RFLAGS decoded, segments, control registers decoded, mode. */
import type { PaneRenderer } from './pane.js';
import { errorLines } from './pane.js';
import { shortHex } from '../text.js';

const h16 = (s: string): string => s.replace(/^0x/, '').padStart(16, '0');

export const cpuPane: PaneRenderer = {
  id: 'cpu',
  render(snap, ui) {
    const c = snap?.cpu;
    const err = errorLines(snap, 'cpu');
    if (err || !c) return { title: `CPU ${ui.cpu}`, lines: err ?? [], follow: 'top' };
    const lines: string[] = [];
    lines.push(`{bold}${c.mode}{/bold} mode, ${c.codeBits}-bit code, CPL ${c.cpl}, {bold}${c.state}{/bold}`);
    for (let i = 0; i < c.gprs.length; i += 2) {
      const a = c.gprs[i]!;
      const b = c.gprs[i + 1]!;
      lines.push(`${a.name.padEnd(3)} ${h16(a.value)} ${b.name.padEnd(3)} ${h16(b.value)}`);
    }
    lines.push(`{bold}RIP ${h16(c.rip)}{/bold} lin ${shortHex(c.linearRip)}`);
    lines.push(`RFL ${c.rflags.value.replace(/^0x/, '')} ${[...c.rflags.set, `IOPL=${c.rflags.iopl}`].join(' ')}`);
    for (const s of c.segments) lines.push(`${s.name}  ${s.selector.replace(/^0x/, '')} ${shortHex(s.base)} ${s.limit.replace(/^0x/, '')} ${s.attributes}`);
    lines.push(`GDT ${shortHex(c.gdtr.base)}/${c.gdtr.limit.replace(/^0x/, '')} IDT ${shortHex(c.idtr.base)}/${c.idtr.limit.replace(/^0x/, '')} TR ${c.tr.selector.replace(/^0x/, '')}`);
    lines.push(`CR0 ${shortHex(c.control.cr0.value)} ${c.control.cr0.set.join(' ')}`);
    lines.push(`CR2 ${h16(c.control.cr2)} CR3 ${shortHex(c.control.cr3)}`);
    lines.push(`CR4 ${shortHex(c.control.cr4.value)} ${c.control.cr4.set.join(' ')}`);
    lines.push(`EFER ${shortHex(c.control.efer.value)} ${c.control.efer.set.join(' ')} paging:${c.control.paging}`);
    lines.push(`TR ${c.tr.selector.replace(/^0x/, '')} base ${shortHex(c.tr.base)} ${c.tr.attributes}  LDTR ${c.ldtr.selector.replace(/^0x/, '')}`);
    const all = [...(snap?.vcpus?.cpus ?? []), ...(snap?.vcpus?.vms.flatMap((vm) => vm.vcpus) ?? [])];
    const id = all.find((v) => v.index === ui.cpu)?.id;
    return { title: `CPU ${ui.cpu}${id && id !== `cpu${ui.cpu}` ? ` ${id}` : ''}`, lines, follow: 'top' };
  },
};
