/**
 * GVA -> GPA -> HPA for a guest vCPU, with every level of both walks: what
 * `firmament translate`, the JSON API and the TUI page-walk pane show.
 */
import { translateGuestVirtual, type NestedTranslation } from './ept/guest-physical.js';
import type { Vcpu } from './vm.js';

export function translateForVcpu(vcpu: Vcpu, gva: bigint, access: 'read' | 'write' | 'fetch' = 'read', user = false): NestedTranslation {
  const ept = vcpu.vm.vmMemory.ept;
  return translateGuestVirtual(vcpu.vm.machine.memory, ept.eptp(), vcpu.cpu.readControl(), gva, access, user, { setAccessedDirty: false });
}

const hex = (v: bigint | number | null): string => (v === null ? '-' : `0x${v.toString(16)}`);

/** A plain-text rendering, one line per level, for the CLI. */
export function formatTranslation(t: NestedTranslation): string {
  const lines: string[] = [`GVA ${hex(t.gva)} (${t.access}${t.user ? ', user' : ''}): ${t.reason}`];
  t.guestSteps.forEach((s, i) => {
    const acc = t.tableAccesses.find((a) => a.guestLevel === s.level && a.op === 'read');
    const hpa = acc && acc.ept.ok ? ` -> HPA ${hex(acc.ept.hpa)}` : '';
    const f = s.flags;
    const flags = (['P', 'RW', 'US', 'A', 'D', 'PS', 'NX'] as const).filter((k) => f[k]).join(' ');
    lines.push(`  guest ${s.level.padEnd(4)} [${String(s.index).padStart(3)}] entry @GPA ${hex(s.entryAddr)}${hpa} = ${hex(s.entry)}  ${flags}${i === t.guestSteps.length - 1 && t.stage === 'guest-page-fault' ? '  <- #PF' : ''}`);
  });
  if (t.gpa !== null) lines.push(`  GPA ${hex(t.gpa)}`);
  if (t.final) {
    for (const s of t.final.steps) {
      const f = s.flags;
      const flags = [f.R && 'R', f.W && 'W', f.X && 'X', f.PS && 'PS', f.A && 'A', f.D && 'D', `MT=${f.memType}`].filter(Boolean).join(' ');
      lines.push(`  EPT   ${s.level.padEnd(8)} [${String(s.index).padStart(3)}] entry @HPA ${hex(s.entryAddr)} = ${hex(s.entry)}  ${flags}`);
    }
  }
  if (t.hpa !== null) lines.push(`  HPA ${hex(t.hpa)} (page ${t.pageSize} bytes)`);
  return lines.join('\n');
}
