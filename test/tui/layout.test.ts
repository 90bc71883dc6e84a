import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { computeLayout, isFullSize, type Rect } from '../../tui/layout.js';
import { KEY_BINDINGS, helpLines } from '../../tui/keys.js';
import { PANE_IDS } from '../../tui/ui-state.js';
import { fit, plain, visibleLength, esc, shortHex } from '../../tui/text.js';
import { memoryRowBytes } from '../../tui/panes/memory-pane.js';

const overlaps = (a: Rect, b: Rect): boolean => a.left < b.left + b.width && b.left < a.left + a.width && a.top < b.top + b.height && b.top < a.top + a.height;

describe('layout', () => {
  for (const [cols, rows] of [[120, 40], [80, 24], [100, 30], [200, 60], [132, 43]] as const) {
    it(`${cols}x${rows}: every pane is on screen, inside it, usable, and none overlap`, () => {
      const l = computeLayout(cols, rows);
      for (const id of PANE_IDS) {
        const r = l[id];
        expect(r.width, id).toBeGreaterThanOrEqual(20);
        expect(r.height, id).toBeGreaterThanOrEqual(4);
        expect(r.left + r.width).toBeLessThanOrEqual(cols);
        expect(r.top + r.height).toBeLessThanOrEqual(rows - 1); // last row: status bar
      }
      for (const a of PANE_IDS) for (const b of PANE_IDS) if (a < b) expect(overlaps(l[a], l[b]), `${a}/${b}`).toBe(false);
      // The panes tile the whole area above the status bar.
      const area = PANE_IDS.reduce((n, id) => n + l[id].width * l[id].height, 0);
      expect(area).toBe(cols * (rows - 1));
    });
  }

  it('120x40 gives the CPU pane room for every register line and memory 16 bytes per row', () => {
    const l = computeLayout(120, 40);
    expect(isFullSize(120, 40)).toBe(true);
    expect(l.cpu.height - 2).toBeGreaterThanOrEqual(22);
    expect(memoryRowBytes(l.memory.width - 2)).toBe(16);
    expect(isFullSize(80, 24)).toBe(false);
  });

  it('zoom gives the focused pane the whole screen', () => {
    const l = computeLayout(80, 24, 'memory');
    expect(l.memory).toEqual({ left: 0, top: 0, width: 80, height: 23 });
    expect(l.cpu.width).toBe(0);
  });
});

describe('keys', () => {
  it('no key is bound twice, and the help lists every binding', () => {
    const keys = KEY_BINDINGS.flatMap((b) => b.keys);
    expect(new Set(keys).size).toBe(keys.length);
    const help = helpLines().join('\n');
    for (const b of KEY_BINDINGS) expect(help).toContain(b.help);
  });

  it('docs/tui.md documents every key', () => {
    const doc = readFileSync(join(import.meta.dirname, '../../docs/tui.md'), 'utf8');
    for (const b of KEY_BINDINGS) expect(doc, b.label).toContain(`| ${b.help} |`);
  });
});

describe('text fitting', () => {
  it('cuts tagged text by visible width and escapes guest braces', () => {
    expect(visibleLength('{red-fg}abc{/red-fg}')).toBe(3);
    expect(plain(fit('{bold}abcdef{/bold}', 4))).toBe('abcd');
    expect(plain(esc('{x}'))).toBe('{x}');
    expect(visibleLength(esc('{x}'))).toBe(3);
    expect(shortHex('0x00000000000ffff0')).toBe('000ffff0');
    expect(shortHex('0xffff800000000000')).toBe('ffff800000000000');
  });
});
