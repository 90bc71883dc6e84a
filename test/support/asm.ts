/** Assembles test fixtures with the GNU toolchain into flat images (cached by content hash). */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

const root = resolve(import.meta.dirname, '../..');
const outDir = join(root, '.cache/test-asm');

/** Builds a 128 KiB ROM from a fixture linked with test/fixtures/rom.ld. */
export function buildRom(fixture: string): Uint8Array {
  const src = join(root, 'test/fixtures', fixture);
  const ld = join(root, 'test/fixtures/rom.ld');
  const h = createHash('sha256').update(readFileSync(src)).update(readFileSync(ld));
  for (const inc of ['pm32-prologue.inc', 'reset-vector.inc']) h.update(readFileSync(join(root, 'test/fixtures', inc)));
  const hash = h.digest('hex').slice(0, 16);
  mkdirSync(outDir, { recursive: true });
  const bin = join(outDir, `${fixture}.${hash}.bin`);
  if (!existsSync(bin)) {
    const obj = join(outDir, `${fixture}.${hash}.o`);
    const elf = join(outDir, `${fixture}.${hash}.elf`);
    execFileSync('gcc', ['-c', '-m32', '-nostdlib', '-I', join(root, 'test/fixtures'), '-o', obj, src], { stdio: 'pipe' });
    execFileSync('ld', ['-m', 'elf_i386', '-T', ld, '--no-warn-rwx-segments', '-o', elf, obj], { stdio: 'pipe' });
    execFileSync('objcopy', ['-O', 'binary', elf, bin], { stdio: 'pipe' });
  }
  const rom = new Uint8Array(readFileSync(bin));
  if (rom.length !== 128 * 1024) throw new Error(`${fixture}: ROM is ${rom.length} bytes, expected 131072`);
  return rom;
}

export function writeTemp(name: string, data: Uint8Array): string {
  mkdirSync(outDir, { recursive: true });
  const p = join(outDir, name);
  writeFileSync(p, data);
  return p;
}
