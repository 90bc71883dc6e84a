import { beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { resolve } from 'node:path';
import { buildImages } from '../../tools/build-images.mjs';
import type { SessionSnapshot } from '../../machine/debug/protocol.js';
import type { StopInfo } from '../../machine/debug/debugger.js';

const ROOT = resolve(import.meta.dirname, '../..');
const firmament = (...args: string[]): string => execFileSync(process.execPath, ['tools/firmament.mjs', ...args], { cwd: ROOT, encoding: 'utf8' });

describe('firmament inspect (JSON)', () => {
  beforeAll(async () => {
    await buildImages({ quiet: true });
  });

  it('boots to a POST code and prints the views, including a page walk', () => {
    const out = JSON.parse(firmament('inspect', '--break', 'post:HANDOFF', '--walk', '0x100000', '--memory', 'p:0x8000+32', '--parts', 'cpu,pageWalk,timeline,memory')) as SessionSnapshot & { stop: StopInfo };
    expect(out.stop).toMatchObject({ reason: 'post-code', code: '0x5F', name: 'HANDOFF' });
    expect(out.status).toMatchObject({ state: 'paused' });
    expect(out.cpu).toMatchObject({ mode: 'long', codeBits: 64 });
    expect(out.pageWalk?.levels.map((l) => l.level)).toEqual(['PML4', 'PDPT', 'PD']);
    expect(out.pageWalk?.result).toMatchObject({ ok: true, physical: '0x0000000000100000' });
    expect(out.timeline?.stages.map((s) => s.name)).toEqual(['reset', 'real-mode', 'protected-mode', 'long-mode-init', 'post', 'containers']);
    expect(out.memory?.rows).toHaveLength(2);
    expect(out.disassembly).toBeUndefined();
  });

  it('rejects a bad breakpoint with a usage error (status 2)', () => {
    expect(() => execFileSync(process.execPath, ['tools/firmament.mjs', 'inspect', '--break', 'post:NOPE'], { cwd: ROOT, stdio: 'pipe' })).toThrow(/not a POST code/);
  });
});
