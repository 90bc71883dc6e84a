/**
 * A boot that fails after the handoff keeps what matters in its failure
 * snapshot: the hypervisor's VMs, each where it stopped. `tui --restore`
 * (restoreMachine) opens them for inspection.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readMachineSnapshot } from '../../tools/cli/snapshot-file.js';
import { restoreMachine } from '../../tools/cli/restore.js';
import { buildImages } from '../../tools/build-images.mjs';

const ROOT = resolve(import.meta.dirname, '../..');

describe('failure snapshots of a boot after the handoff', () => {
  it('hold every VM where it stopped; restoring them gives the same consoles and exits, paused for inspection', async () => {
    const images = await buildImages({ quiet: true });
    const dir = mkdtempSync(join(tmpdir(), 'fm-failsnap-'));
    const file = join(dir, 'boot.fmsnap');
    const r = spawnSync(process.execPath, [join(ROOT, 'tools/firmament.mjs'), 'boot', '--guest', images.guests['crash']!, '--guest', images.guests['hello']!, '--json', '--clock', 'virtual', '--timeout', '120', '--snapshot-on-exit', file], { encoding: 'utf8', timeout: 240_000 });
    const report = JSON.parse(r.stdout) as { snapshot?: { file: string; bytes?: number; error?: string }; guests: { name: string; serial: string; exit: { reason: string; code: number } | null }[] };
    expect(report.snapshot?.error).toBeUndefined();
    expect(report.snapshot?.file).toBe(file);
    expect(report.guests.map((g) => g.name)).toEqual(['crash', 'hello']);
    const snap = readMachineSnapshot(file);
    expect(snap.shape).toMatchObject({ command: 'boot', handedOff: true });
    expect(snap.vms?.map((v) => v.state['name'])).toEqual(['crash', 'hello']);
    const restored = restoreMachine(file);
    try {
      expect(restored.label).toMatch(/after the handoff: VMs crash, hello/);
      const res = restored.session.handle({ cmd: 'consoles', args: {} });
      if (!res.ok) throw new Error(res.error);
      const consoles = (res.result as { consoles: { id: string; text: string }[] }).consoles;
      for (const g of report.guests) {
        const c = consoles.find((x) => x.id === `vm:${g.name}:com1`);
        expect(c?.text).toBe(g.serial);
      }
      // Each VM kept its exit (the crash guest's triple fault among them).
      const vms = restored.session.handle({ cmd: 'vcpus', args: {} });
      if (!vms.ok) throw new Error(vms.error);
      const exits = (vms.result as { vms: { name: string; exit: string | null }[] }).vms.map((v) => [v.name, v.exit]);
      expect(exits).toEqual(report.guests.map((g) => [g.name, g.exit ? `${g.exit.reason} code ${g.exit.code}` : null]));
    } finally {
      await restored.close();
    }
  }, 300_000);
});
