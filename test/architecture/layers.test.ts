/**
 * The folder tree is the architecture, and its arrows point down:
 * tools/ and tui/ use vmm/, which uses hypervisor/ and machine/;
 * hypervisor/ uses machine/; machine/ imports none of them. An import
 * against an arrow fails here with the file and the line.
 */
import { describe, expect, it } from 'vitest';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';

const ROOT = resolve(import.meta.dirname, '../..');
const LAYERS = ['machine', 'hypervisor', 'vmm', 'tui', 'tools', 'bench', 'test'] as const;
/** What each layer may not import. */
const FORBIDDEN: Record<string, readonly string[]> = {
  machine: ['hypervisor', 'vmm', 'tui', 'tools', 'bench', 'test'],
  hypervisor: ['vmm', 'tui', 'tools', 'bench', 'test'],
  vmm: ['tui', 'tools', 'bench', 'test'],
};

function sources(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...sources(p));
    else if (/\.(ts|mts|mjs)$/.test(e.name) && !/\.d\.m?ts$/.test(e.name)) out.push(p);
  }
  return out;
}

/** Relative import specifiers (static, re-exports and dynamic) with their lines. */
function imports(file: string): { spec: string; line: number }[] {
  const text = readFileSync(file, 'utf8');
  const out: { spec: string; line: number }[] = [];
  const re = /(?:\bfrom\s*|\bimport\s*\(\s*|\bimport\s+)['"](\.{1,2}\/[^'"]+)['"]/g;
  for (let m = re.exec(text); m; m = re.exec(text)) out.push({ spec: m[1]!, line: text.slice(0, m.index).split('\n').length });
  return out;
}

function layerOf(path: string): string | null {
  const top = relative(ROOT, path).split(/[\\/]/)[0] ?? '';
  return (LAYERS as readonly string[]).includes(top) ? top : null;
}

describe('layers', () => {
  it('machine/, hypervisor/ and vmm/ import only the layers below them', () => {
    const violations: string[] = [];
    for (const [layer, forbidden] of Object.entries(FORBIDDEN)) {
      for (const file of sources(join(ROOT, layer))) {
        for (const { spec, line } of imports(file)) {
          const target = layerOf(resolve(dirname(file), spec));
          if (target && forbidden.includes(target)) violations.push(`${relative(ROOT, file)}:${line}: ${layer}/ imports ${target}/ (${spec})`);
        }
      }
    }
    expect(violations).toEqual([]);
  });

  it('the check sees an import against the arrows', () => {
    // The scanner itself: a wrong arrow in this very test file's terms would be found.
    expect(imports(join(ROOT, 'vmm/boot.ts')).some((i) => layerOf(resolve(ROOT, 'vmm', i.spec)) === 'hypervisor')).toBe(true);
  });
});
