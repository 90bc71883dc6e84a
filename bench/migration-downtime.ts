/**
 * Migration downtime alone: N migrations of the dirtier guest (prepopulate),
 * the median source downtime and its phases. `npx tsx bench/migration-downtime.ts [N] [cmdline]`
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PROJECT_ROOT } from '../machine/cpu/unicorn/locate.js';
import { ourMigration } from './migration.js';

const n = Number(process.argv[2] ?? 3);
const cmdline = process.argv[3] ?? 'mib=8 passes=150';
const dir = mkdtempSync(join(tmpdir(), 'fm-downtime-'));
const elf = join(PROJECT_ROOT, 'images/build/guests/dirtier.elf');
const downtimes: number[] = [];
try {
  for (let i = 0; i < n; i++) {
    const r = await ourMigration(dir, elf, cmdline, 'prepopulate', 'pass 3/');
    downtimes.push(r.report.downtimeMsSource);
    console.log(JSON.stringify({ downtimeMsSource: r.report.downtimeMsSource, dst: r.report.downtimeMsDestination, phases: r.report.switchOver, dstPhases: (r.report as { destination?: unknown }).destination, rounds: r.report.rounds.length, transcript: r.transcriptNote }));
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
downtimes.sort((a, b) => a - b);
console.log(`median source downtime ${downtimes[Math.floor(downtimes.length / 2)]} ms over ${n}`);
