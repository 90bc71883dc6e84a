/**
 * `npm run fuzz [-- --runs N] [--seed S] [--only NAME]`: every fuzz target with a
 * long budget (default 100,000 inputs each). Prints, per target, the inputs run,
 * the time and the findings (a shrunk counterexample); exits 1 on any finding.
 */
import { parseArgs } from 'node:util';
import { FUZZ_TARGETS } from './targets.js';

const { values } = parseArgs({ options: { runs: { type: 'string' }, seed: { type: 'string' }, only: { type: 'string' }, json: { type: 'boolean' } } });
const runs = Number(values.runs ?? 100_000);
const seed = Number(values.seed ?? Date.now() % 2 ** 31);
if (!Number.isInteger(runs) || runs < 1) throw new Error(`--runs ${values.runs}: expected a whole number >= 1`);

interface Row {
  target: string;
  inputs: number;
  seconds: number;
  findings: number;
  counterexample?: string;
  error?: string;
  outcomes: Record<string, number>;
}

const rows: Row[] = [];
for (const target of FUZZ_TARGETS) {
  if (values.only && target.name !== values.only) continue;
  const t0 = performance.now();
  const r = target.check({ numRuns: runs, seed });
  const row: Row = { target: target.name, inputs: r.inputs, seconds: Math.round((performance.now() - t0) / 100) / 10, findings: r.failed ? 1 : 0, outcomes: r.outcomes };
  if (r.failed) {
    row.counterexample = r.counterexample ?? '';
    row.error = r.error ?? '';
  }
  rows.push(row);
  process.stderr.write(`${target.name.padEnd(18)} ${String(row.inputs).padStart(8)} inputs  ${String(row.seconds).padStart(7)} s  ${row.findings ? `FINDING: ${row.error}\n  input: ${row.counterexample}` : '0 findings'}\n`);
  const top = Object.entries(r.outcomes).sort((a, b) => b[1] - a[1]).slice(0, 8);
  process.stderr.write(`  outcomes: ${top.map(([k, n]) => `${k} ${n}`).join(', ')}\n`);
}
process.stdout.write(JSON.stringify({ seed, runsPerTarget: runs, targets: rows }, null, 2) + '\n');
process.exitCode = rows.some((r) => r.findings > 0) ? 1 : 0;
