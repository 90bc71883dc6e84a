import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseDuration, readPoolConfig, DEFAULT_RUNTIME } from '../../tools/cli/serve.js';

/** `firmament serve` options and pool.json: clear refusals naming the option, file and field. */
const write = (doc: unknown): string => {
  const f = path.join(mkdtempSync(path.join(os.tmpdir(), 'fm-pool-')), 'pool.json');
  writeFileSync(f, typeof doc === 'string' ? doc : JSON.stringify(doc));
  return f;
};

describe('serve options', () => {
  it('durations: ms, s, m', () => {
    expect(parseDuration('250', '--idle-timeout')).toBe(250);
    expect(parseDuration('500ms', '--idle-timeout')).toBe(500);
    expect(parseDuration('30s', '--idle-timeout')).toBe(30_000);
    expect(parseDuration('5m', '--tx-ttl')).toBe(300_000);
    expect(() => parseDuration('soon', '--tx-ttl')).toThrow(/--tx-ttl soon: expected a duration like 500ms, 30s or 5m/);
    expect(() => parseDuration('0', '--tx-ttl')).toThrow(/must be positive/);
  });

  it('pool.json: shapes with the default runtime, and refusals naming the field', () => {
    const ok = readPoolConfig(write({ shapes: [{ name: 'small', memMiB: 8 }, { name: 'big', memMiB: 64, vcpus: 1 }], warm: 2, maxVms: 10, idleTimeoutMs: 1000, limitMs: 50 }));
    expect(ok.shapes).toEqual([{ name: 'small', memMiB: 8, vcpus: 1, image: DEFAULT_RUNTIME }, { name: 'big', memMiB: 64, vcpus: 1, image: DEFAULT_RUNTIME }]);
    expect(ok).toMatchObject({ warm: 2, maxVms: 10, idleTimeoutMs: 1000, limitMs: 50 });
    expect(() => readPoolConfig(write('{'))).toThrow(/--config .*pool.json: /);
    expect(() => readPoolConfig(write({ shapes: [] }))).toThrow(/shapes: expected a non-empty array/);
    expect(() => readPoolConfig(write({ shapes: [{ name: 'x', memMiB: 2 }] }))).toThrow(/shapes\[0\].memMiB: expected a whole number 4..1024/);
    expect(() => readPoolConfig(write({ shapes: [{ name: 'x', memMiB: 8, vcpus: 2 }] }))).toThrow(/shapes\[0\].vcpus: 2: the runtime serves on one vCPU/);
    expect(() => readPoolConfig(write({ shapes: [{ name: 'x', memMiB: 8, image: 'nope.elf' }] }))).toThrow(/shapes\[0\].image: .*nope.elf does not exist/);
    expect(() => readPoolConfig(write({ warm: -1 }))).toThrow(/warm: expected a whole number >= 0/);
  });
});
