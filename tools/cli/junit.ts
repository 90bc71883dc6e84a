/**
 * JUnit XML for CI systems: one test case per POST check, firmware container,
 * the handoff and each guest, so a failing boot shows up as named failures.
 */
import { accessSync, constants, statSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { UsageError } from './args.js';
import { describeFsError } from '../../machine/platform/input-file.js';
import type { BootReport } from '../../vmm/boot.js';

interface Case {
  name: string;
  classname: string;
  timeMs: number;
  failure?: { message: string; body: string };
  output?: string;
}

/**
 * The file is ISO-8859-1, so serial bytes 0x80-0xFF (kept as one char per byte) are written as
 * themselves; text beyond U+00FF (our own messages) becomes character references. Control bytes
 * XML 1.0 cannot hold at all are shown as \xNN.
 */
const esc = (s: string): string =>
  s
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`)
    .replace(/[^\u0000-\u00ff]/gu, (c) => `&#x${c.codePointAt(0)!.toString(16)};`);

export function bootJunitCases(r: BootReport): Case[] {
  const cases: Case[] = [];
  const stage = (name: string): number => {
    const s = r.stages.find((x) => x.name === name);
    return s && s.endMs !== null ? s.endMs - s.startMs : 0;
  };
  const posted = r.postCodes.map((p) => `${p.hex} ${p.name}`).join('\n');
  cases.push({
    name: 'POST',
    classname: 'firmament.firmware',
    timeMs: stage('post'),
    output: posted,
    ...(r.postErrors.length ? { failure: { message: r.postErrors.map((p) => `${p.hex} ${p.name} (${p.severity})`).join(', '), body: posted } } : {}),
  });
  for (const c of r.containers) {
    const bad = c.status === 'fail' || c.status === 'rejected' || c.status === 'timeout';
    const findings = c.findings.map((f) => `[${f.severity}] ${f.source} 0x${f.code.toString(16)}: ${f.text}`).join('\n');
    cases.push({ name: `container ${c.name}`, classname: 'firmament.containers', timeMs: 0, output: `${c.status} ${c.digest}\n${findings}`, ...(bad ? { failure: { message: `${c.name}: ${c.status}`, body: findings } } : {}) });
  }
  cases.push({
    name: 'handoff',
    classname: 'firmament.os',
    timeMs: stage('containers'),
    ...(r.handoff ? {} : { failure: { message: `no handoff: ${r.exit.reason}${r.exit.detail ? `: ${r.exit.detail}` : ''}`, body: r.serial.slice(-4000) } }),
  });
  for (const g of r.guests) {
    const ok = g.exit?.reason === 'debug-exit' && g.exit.code === 1;
    cases.push({ name: `guest ${g.name}`, classname: 'firmament.guests', timeMs: 0, output: g.serial, ...(ok ? {} : { failure: { message: `${g.name}: ${g.exit?.reason ?? 'still running'} (code ${g.exit?.code ?? '-'})`, body: g.serial.slice(-4000) } }) });
  }
  return cases;
}

export function junitXml(suite: string, cases: Case[], wallMs: number): string {
  const failures = cases.filter((c) => c.failure).length;
  const body = cases
    .map((c) => {
      const inner = [c.failure ? `<failure message="${esc(c.failure.message)}">${esc(c.failure.body)}</failure>` : '', c.output ? `<system-out>${esc(c.output)}</system-out>` : ''].join('');
      return `  <testcase name="${esc(c.name)}" classname="${esc(c.classname)}" time="${(c.timeMs / 1000).toFixed(3)}">${inner}</testcase>`;
    })
    .join('\n');
  return `<?xml version="1.0" encoding="ISO-8859-1"?>\n<testsuite name="${esc(suite)}" tests="${cases.length}" failures="${failures}" errors="0" time="${(wallMs / 1000).toFixed(3)}">\n${body}\n</testsuite>\n`;
}

/** --junit FILE must be writable: checked before a boot that could take minutes. */
export function checkJunitPath(file: string): void {
  let isDir = false;
  try {
    isDir = statSync(file).isDirectory();
  } catch {
    // Does not exist yet: its directory must.
    try {
      if (!statSync(dirname(file)).isDirectory()) throw new UsageError(`--junit ${file}: ${dirname(file)} is not a directory`);
      accessSync(dirname(file), constants.W_OK);
    } catch (e) {
      if (e instanceof UsageError) throw e;
      throw new UsageError(`--junit ${file}: cannot create it in ${dirname(file)}: ${describeFsError(e)}`);
    }
    return;
  }
  if (isDir) throw new UsageError(`--junit ${file}: is a directory (give a file name, e.g. ${file.replace(/\/$/, '')}/boot.xml)`);
  try {
    accessSync(file, constants.W_OK);
  } catch (e) {
    throw new UsageError(`--junit ${file}: ${describeFsError(e)}`);
  }
}

export function writeBootJunit(file: string, r: BootReport): void {
  writeFileSync(file, Buffer.from(junitXml('firmament boot', bootJunitCases(r), r.wallMs), 'latin1'));
}
