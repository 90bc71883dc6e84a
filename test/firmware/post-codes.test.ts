/** firmware/post-codes.json is the single source: validate it and check the generated header and docs. */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = path.resolve(import.meta.dirname, '../..');

interface PostCode {
  code: number;
  hex: string;
  name: string;
  severity: 'progress' | 'error' | 'fatal';
  description: string;
  flag: number | null;
}
interface PostCodesModule {
  loadPostCodes(): PostCode[];
  renderPostCodesHeader(codes: PostCode[]): string;
  renderPostCodeTable(codes: PostCode[]): string;
  updatePostCodeDoc(doc: string, codes: PostCode[]): string;
}
const mod = (await import(pathToFileURL(path.join(ROOT, 'tools/build-firmware.mjs')).href)) as PostCodesModule;

describe('POST code table', () => {
  const codes = mod.loadPostCodes();

  it('has the required progress and error codes, unique codes and flag bits', () => {
    const names = codes.map((c) => c.name);
    for (const n of ['RESET_ENTERED', 'PROTECTED_MODE', 'LONG_MODE', 'C_ENTRY', 'CONSOLE_READY', 'CPU_DETECT',
      'MEMORY_SIZING', 'MEMORY_MAP', 'MEMTEST_START', 'MEMTEST_PASS', 'PIC_INIT', 'PIT_CHECK', 'TIMER_IRQ_CHECK',
      'CMOS_CHECK', 'FWCFG_PROBE', 'NEXT_STAGE_LOAD', 'HANDOFF', 'MEMTEST_FAIL', 'UART_DEAD', 'CMOS_CHECKSUM_BAD',
      'PIT_STUCK', 'FWCFG_MISSING', 'NEXT_STAGE_MISSING', 'NEXT_STAGE_INVALID', 'UNEXPECTED_EXCEPTION']) {
      expect(names).toContain(n);
    }
    expect(new Set(codes.map((c) => c.code)).size).toBe(codes.length);
    const flags = codes.filter((c) => c.flag !== null).map((c) => c.flag);
    expect(new Set(flags).size).toBe(flags.length);
    expect(codes.find((c) => c.name === 'UNEXPECTED_EXCEPTION')?.severity).toBe('fatal');
    // Progress codes ascend in boot order.
    const progress = codes.filter((c) => c.severity === 'progress').map((c) => c.code);
    expect([...progress].sort((a, b) => a - b)).toEqual(progress);
  });

  it('generates a C/assembly header with every code', () => {
    const h = mod.renderPostCodesHeader(codes);
    expect(h).toContain('#define POST_RESET_ENTERED 0x01');
    expect(h).toContain('#define POST_FLAG_CMOS_CHECKSUM_BAD 0x00000020u');
    expect(h).toMatch(/#ifndef __ASSEMBLER__/);
    for (const c of codes) expect(h).toContain(`#define POST_${c.name} ${c.hex}`);
  });

  it('docs/post-codes.md carries the current generated table (run: node tools/build-firmware.mjs --docs)', () => {
    const doc = readFileSync(path.join(ROOT, 'docs/post-codes.md'), 'utf8');
    expect(mod.updatePostCodeDoc(doc, codes)).toBe(doc);
    expect(doc).toContain(mod.renderPostCodeTable(codes));
  });
});
