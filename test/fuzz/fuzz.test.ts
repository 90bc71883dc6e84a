/**
 * The fuzz harness on a short budget (`npm test`); `npm run fuzz` runs the
 * same properties with >= 100,000 inputs each (test/fuzz/run.ts, docs/security.md).
 * A fixed seed keeps `npm test` deterministic; FUZZ_SEED overrides it.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { buildImages } from '../../tools/build-images.mjs';
import { FUZZ_TARGETS } from './targets.js';

const SHORT_RUNS: Record<string, number> = { multiboot: 2000, 'oci-documents': 2000, 'snapshot-codec': 2000, 'monitor-protocol': 1000, 'hypercall-abi': 5000 };
const seed = Number(process.env['FUZZ_SEED'] ?? 20261202);

beforeAll(async () => {
  await buildImages({ quiet: true });
});

describe('fuzzing (short budget)', () => {
  for (const target of FUZZ_TARGETS) {
    it(`${target.name}: no input crashes it`, () => {
      const numRuns = SHORT_RUNS[target.name] ?? 300;
      const r = target.check({ numRuns, seed });
      expect(r.failed ? `${r.error}\ninput: ${r.counterexample}` : null).toBeNull();
      expect(r.inputs).toBe(numRuns);
    });
  }
});
