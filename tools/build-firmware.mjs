#!/usr/bin/env node
/**
 * Reproducible build of the Firmament firmware ROM and its test payload.
 *
 *   node tools/build-firmware.mjs [--force] [--quiet]   build images/build/{firmware.rom,payload.elf}
 *   node tools/build-firmware.mjs --docs                 regenerate the table in docs/post-codes.md
 *   node tools/build-firmware.mjs --check-docs           exit 1 if docs/post-codes.md is stale
 *
 * Library use:
 *   import { buildFirmware } from './tools/build-firmware.mjs';
 *   const { rom, payload } = await buildFirmware({ force: false });
 *
 * Reproducibility: sources are compiled from the repository root with
 * relative paths in a fixed (sorted) order, -ffile-prefix-map hides absolute
 * paths, no debug info, --build-id=none, no timestamps anywhere (-Wdate-time
 * is an error), LC_ALL=C and SOURCE_DATE_EPOCH removed from the tool
 * environment. The same sources and toolchain give byte-identical outputs.
 *
 * Staleness: a stamp file records the sha256 of every input (sources, JSON,
 * link scripts, this script and tools/lib/build-kit.mjs, toolchain
 * versions); when it matches and the outputs still hash to what the stamp
 * recorded, nothing is rebuilt.
 */
import { promises as fsp, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  compileAll, fileSha, inputHasher, KIT_REL, listFiles, publish, readStamp, run as runTool, toolFailure, toolVersions,
  withTempDir, writeStamp,
} from './lib/build-kit.mjs';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const DEFAULT_OUT_DIR = path.join(ROOT, 'images', 'build');
const SCRIPT_REL = 'tools/build-firmware.mjs';
const POST_JSON_REL = 'firmware/post-codes.json';
const POST_DOC_REL = 'docs/post-codes.md';
const ROM_SIZE = 131072;
/* Directories under firmware/ owned by other components: never inputs here. */
const EXCLUDED_DIRS = new Set(['firmware/containers', 'firmware/os']);

const FW_SOURCES = { asm: ['firmware/reset'], c: ['firmware/post', 'firmware/lib'] };
const PAYLOAD_SOURCES = { asm: ['firmware/payload'], c: ['firmware/payload', 'firmware/lib'] };

const CFLAGS = [
  '-m64', '-std=c11', '-O2', '-ffreestanding', '-fno-pic', '-fno-pie', '-mcmodel=small',
  '-mno-red-zone', '-mgeneral-regs-only', '-fno-stack-protector', '-fno-asynchronous-unwind-tables',
  '-fno-unwind-tables', '-fcf-protection=none', '-fno-common', '-fno-strict-aliasing',
  '-fno-tree-loop-distribute-patterns', '-fno-ident',
  '-Wall', '-Wextra', '-Werror', '-Wdate-time', '-Wno-address-of-packed-member',
];
const ASFLAGS = ['-m64', '-Wa,--noexecstack', '-Werror'];
const LDFLAGS_COMMON = ['-m', 'elf_x86_64', '-nostdlib', '-static', '--build-id=none', '--no-warn-rwx-segments'];

// ---------------------------------------------------------------- POST codes

/**
 * @typedef {{ code: number, hex: string, name: string, severity: 'progress'|'error'|'fatal', description: string, flag: number | null }} PostCode
 */

/** Parse and validate firmware/post-codes.json. @returns {PostCode[]} */
export function loadPostCodes(root = ROOT) {
  const file = path.join(root, POST_JSON_REL);
  const doc = JSON.parse(readFileSync(file, 'utf8'));
  if (!doc || !Array.isArray(doc.codes)) throw new Error(`${POST_JSON_REL}: missing "codes" array`);
  const seenCode = new Map();
  const seenName = new Set();
  const seenFlag = new Map();
  /** @type {PostCode[]} */
  const out = [];
  doc.codes.forEach((c, i) => {
    const where = `${POST_JSON_REL}: codes[${i}]`;
    if (typeof c.code !== 'string' || !/^0x[0-9A-Fa-f]{2}$/.test(c.code)) throw new Error(`${where}: "code" must be a string like "0x3A"`);
    const code = parseInt(c.code, 16);
    if (typeof c.name !== 'string' || !/^[A-Z][A-Z0-9_]*$/.test(c.name)) throw new Error(`${where}: "name" must be UPPER_SNAKE_CASE`);
    if (!['progress', 'error', 'fatal'].includes(c.severity)) throw new Error(`${where}: "severity" must be progress|error|fatal`);
    if (typeof c.description !== 'string' || c.description.length === 0) throw new Error(`${where}: "description" missing`);
    if (seenCode.has(code)) throw new Error(`${where}: code ${c.code} duplicates ${seenCode.get(code)}`);
    if (seenName.has(c.name)) throw new Error(`${where}: duplicate name ${c.name}`);
    let flag = null;
    if (c.severity === 'progress') {
      if (c.flag !== undefined) throw new Error(`${where}: progress codes have no "flag"`);
    } else {
      if (!Number.isInteger(c.flag) || c.flag < 0 || c.flag > 31) throw new Error(`${where}: error/fatal codes need "flag" 0..31`);
      if (seenFlag.has(c.flag)) throw new Error(`${where}: flag bit ${c.flag} already used by ${seenFlag.get(c.flag)}`);
      seenFlag.set(c.flag, c.name);
      flag = c.flag;
    }
    seenCode.set(code, c.name);
    seenName.add(c.name);
    out.push({ code, hex: `0x${code.toString(16).toUpperCase().padStart(2, '0')}`, name: c.name, severity: c.severity, description: c.description, flag });
  });
  return out;
}

/** The C/assembly header generated from the JSON. */
export function renderPostCodesHeader(codes) {
  const L = [];
  L.push('/* Generated by tools/build-firmware.mjs from firmware/post-codes.json. Do not edit. */');
  L.push('#ifndef POST_CODES_H', '#define POST_CODES_H', '');
  for (const c of codes) L.push(`#define POST_${c.name} ${c.hex}`);
  L.push('');
  for (const c of codes) if (c.flag !== null) L.push(`#define POST_FLAG_${c.name} 0x${(2 ** c.flag).toString(16).padStart(8, '0')}u`);
  L.push('', '#ifndef __ASSEMBLER__');
  L.push('#define POST_SEV_PROGRESS 0', '#define POST_SEV_ERROR 1', '#define POST_SEV_FATAL 2');
  L.push('struct post_code_info {', '\tunsigned char code;', '\tunsigned char severity;', '\tunsigned int flag_mask;', '\tconst char *name;', '};');
  L.push('static const struct post_code_info post_code_table[] = {');
  for (const c of codes) {
    const sev = `POST_SEV_${c.severity.toUpperCase()}`;
    const mask = c.flag === null ? '0' : `POST_FLAG_${c.name}`;
    L.push(`\t{ ${c.hex}, ${sev}, ${mask}, "${c.name}" },`);
  }
  L.push('};');
  L.push('static inline const struct post_code_info *post_code_lookup(unsigned char code)', '{');
  L.push('\tfor (unsigned int i = 0; i < sizeof(post_code_table) / sizeof(post_code_table[0]); i++)');
  L.push('\t\tif (post_code_table[i].code == code)', '\t\t\treturn &post_code_table[i];');
  L.push('\treturn 0;', '}', '#endif', '', '#endif', '');
  return L.join('\n');
}

const DOC_BEGIN = '<!-- BEGIN GENERATED POST CODE TABLE (node tools/build-firmware.mjs --docs) -->';
const DOC_END = '<!-- END GENERATED POST CODE TABLE -->';

/** The markdown table placed between the markers in docs/post-codes.md. */
export function renderPostCodeTable(codes) {
  const esc = (s) => s.replace(/\|/g, '\\|');
  const L = [DOC_BEGIN, '', '| Code | Name | Severity | Flag bit | Description |', '| --- | --- | --- | --- | --- |'];
  for (const c of codes) {
    L.push(`| \`${c.hex}\` | \`${c.name}\` | ${c.severity} | ${c.flag === null ? '' : c.flag} | ${esc(c.description)} |`);
  }
  L.push('', DOC_END);
  return L.join('\n');
}

/** Return docs/post-codes.md with the generated table replaced. */
export function updatePostCodeDoc(doc, codes) {
  const a = doc.indexOf(DOC_BEGIN);
  const b = doc.indexOf(DOC_END);
  if (a < 0 || b < a) throw new Error(`${POST_DOC_REL}: generated-table markers not found`);
  return doc.slice(0, a) + renderPostCodeTable(codes) + doc.slice(b + DOC_END.length);
}

// ---------------------------------------------------------------- inputs

const run = (cmd, args, what) => runTool(cmd, args, what, { cwd: ROOT, fail: toolFailure('build-firmware', 'FirmwareBuildError') });

async function sourcesOf(spec) {
  const list = (dirs, exts) => Promise.all(dirs.map((d) => listFiles(ROOT, d, { exts, skipDirs: EXCLUDED_DIRS })));
  const asm = (await list(spec.asm, ['.S'])).flat().sort();
  const c = (await list(spec.c, ['.c'])).flat().sort();
  return [...asm, ...c];
}

async function inputsHash() {
  const files = [
    ...(await listFiles(ROOT, 'firmware', { skipDirs: EXCLUDED_DIRS })).filter((f) => !f.startsWith('firmware/host-test/')),
    SCRIPT_REL,
    KIT_REL,
  ].sort();
  const h = await inputHasher().addFiles(ROOT, files);
  h.add('tools', Object.values(await toolVersions(['gcc', 'ld', 'objcopy'])).join('\n'));
  return { hash: h.digest(), files };
}

// ---------------------------------------------------------------- build

/**
 * Build the ROM and the payload (or reuse them when the stamp says they are
 * current).
 * @param {{ force?: boolean, outDir?: string, quiet?: boolean }} [opts]
 * @returns {Promise<{ rom: string, payload: string, built: boolean, romSha256: string, payloadSha256: string }>}
 */
export async function buildFirmware(opts = {}) {
  const force = opts.force === true;
  const outDir = path.resolve(opts.outDir ?? DEFAULT_OUT_DIR);
  const log = opts.quiet ? () => {} : (m) => process.stderr.write(`${m}\n`);
  const rom = path.join(outDir, 'firmware.rom');
  const payload = path.join(outDir, 'payload.elf');
  const stampFile = path.join(outDir, 'firmware.stamp.json');

  const codes = loadPostCodes();
  const { hash } = await inputsHash();
  if (!force) {
    const stamp = await readStamp(stampFile);
    if (stamp && stamp.inputs === hash) {
      const [r, p] = await Promise.all([fileSha(rom), fileSha(payload)]);
      if (r && p && r === stamp.rom && p === stamp.payload) {
        log(`build-firmware: up to date (${path.relative(ROOT, rom)}, ${path.relative(ROOT, payload)})`);
        return { rom, payload, built: false, romSha256: r, payloadSha256: p };
      }
    }
  }

  await fsp.mkdir(outDir, { recursive: true });
  return withTempDir(outDir, '.tmp-fw-', async (tmp) => {
    const gen = path.join(tmp, 'gen');
    await fsp.mkdir(gen, { recursive: true });
    await fsp.writeFile(path.join(gen, 'post_codes.h'), renderPostCodesHeader(codes));
    const compile = async (spec, objDir) => compileAll(await sourcesOf(spec), {
      objDir, run, cflags: CFLAGS, asflags: ASFLAGS, includeDirs: ['firmware/include', gen],
      prefixMaps: [`-ffile-prefix-map=${tmp}=BUILD`, `-ffile-prefix-map=${ROOT}=.`],
    });

    const fwObjs = await compile(FW_SOURCES, path.join(tmp, 'obj', 'firmware'));
    const fwElf = path.join(tmp, 'firmware.elf');
    await run('ld', [...LDFLAGS_COMMON, '-T', 'firmware/link/firmware.ld', '-o', fwElf, ...fwObjs], 'linking firmware.elf');
    const romTmp = path.join(tmp, 'firmware.rom');
    await run('objcopy', ['-O', 'binary', '--gap-fill=0xff', fwElf, romTmp], 'objcopy firmware.rom');
    const romBuf = await fsp.readFile(romTmp);
    if (romBuf.length !== ROM_SIZE) throw new Error(`build-firmware: firmware.rom is ${romBuf.length} bytes, expected ${ROM_SIZE}`);
    if (romBuf[ROM_SIZE - 16] !== 0xe9) throw new Error('build-firmware: reset vector at ROM offset 0x1fff0 is not a near jmp');

    const plObjs = await compile(PAYLOAD_SOURCES, path.join(tmp, 'obj', 'payload'));
    const plTmp = path.join(tmp, 'payload.elf');
    await run('ld', [...LDFLAGS_COMMON, '-z', 'max-page-size=0x1000', '-z', 'noexecstack', '-T', 'firmware/link/payload.ld', '-o', plTmp, ...plObjs], 'linking payload.elf');

    // Publish atomically: rename each output into place, stamp last.
    await fsp.mkdir(path.join(outDir, 'gen'), { recursive: true });
    await publish(path.join(gen, 'post_codes.h'), path.join(outDir, 'gen', 'post_codes.h'));
    await publish(fwElf, path.join(outDir, 'firmware.elf'));
    const romSha256 = await publish(romTmp, rom);
    const payloadSha256 = await publish(plTmp, payload);
    await writeStamp(stampFile, { inputs: hash, rom: romSha256, payload: payloadSha256 }, tmp);
    log(`build-firmware: built ${path.relative(ROOT, rom)} (${ROM_SIZE} bytes, sha256 ${romSha256})`);
    log(`build-firmware: built ${path.relative(ROOT, payload)} (${(await fsp.stat(payload)).size} bytes, sha256 ${payloadSha256})`);
    return { rom, payload, built: true, romSha256, payloadSha256 };
  });
}

/** Regenerate (write=true) or verify the table in docs/post-codes.md. Returns true when up to date. */
export async function syncPostCodeDoc({ write }) {
  const file = path.join(ROOT, POST_DOC_REL);
  const doc = await fsp.readFile(file, 'utf8');
  const next = updatePostCodeDoc(doc, loadPostCodes());
  if (next === doc) return true;
  if (write) await fsp.writeFile(file, next);
  return false;
}

// ---------------------------------------------------------------- CLI

const isMain = process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url);
if (isMain) {
  const args = new Set(process.argv.slice(2));
  const known = new Set(['--force', '--quiet', '--docs', '--check-docs', '--help']);
  const unknown = [...args].filter((a) => !known.has(a));
  if (unknown.length || args.has('--help')) {
    process.stderr.write('usage: node tools/build-firmware.mjs [--force] [--quiet] | --docs | --check-docs\n');
    process.exit(unknown.length ? 2 : 0);
  }
  try {
    if (args.has('--docs') || args.has('--check-docs')) {
      const ok = await syncPostCodeDoc({ write: args.has('--docs') });
      if (args.has('--docs')) process.stderr.write(`build-firmware: ${POST_DOC_REL} ${ok ? 'already up to date' : 'regenerated'}\n`);
      else if (!ok) {
        process.stderr.write(`build-firmware: ${POST_DOC_REL} is stale; run node tools/build-firmware.mjs --docs\n`);
        process.exit(1);
      }
    } else {
      await buildFirmware({ force: args.has('--force'), quiet: args.has('--quiet') });
    }
  } catch (e) {
    process.stderr.write(`${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(1);
  }
}
