/**
 * Judges one run of a test: the worker's exit status and its JSON report
 * (`firmament run|boot --json`) against the test's expectations. Every
 * mismatch becomes one message a CI user can act on.
 */
import type { Expectations } from './suite.js';

/** The parts of the boot and run JSON reports the runner reads. */
export interface WorkerReport {
  serial?: string;
  exit?: { reason: string; code: number; detail?: string };
  postCodes?: { code: number; hex: string; name: string; atMs: number }[];
  containers?: { name: string; status: string }[];
  guests?: { name: string; serial: string; exit: { reason: string; code: number } | null }[];
  snapshot?: { file: string; bytes: number } | { file: string; error: string };
  virtualMs?: number;
}

export interface WorkerOutcome {
  /** null when the worker was killed by a signal. */
  status: number | null;
  signal: string | null;
  /** The runner killed it: no exit within the test's timeout plus grace. */
  killed: boolean;
  report: WorkerReport | null;
  /** Why there is no report (not JSON, nothing printed). */
  reportError: string | null;
  stderr: string;
  durationMs: number;
}

export type Verdict = { kind: 'passed' } | { kind: 'failure' | 'error'; type: string; messages: string[] };

/** What the test's console shows: the guest's COM1 (image tests), or COM1 then each guest's (boot tests). */
export function consoleText(kind: 'run' | 'boot', r: WorkerReport): string {
  if (kind === 'run') return r.serial ?? '';
  return [r.serial ?? '', ...(r.guests ?? []).map((g) => g.serial)].join('');
}

const quote = (s: string, max = 80): string => JSON.stringify(s.length > max ? `${s.slice(0, max)}…` : s);

function lineOf(text: string, index: number): number {
  let n = 1;
  for (let i = 0; i < index; i++) if (text.charCodeAt(i) === 10) n++;
  return n;
}

/** Where two transcripts first differ, with a little context from each. */
export function firstDifference(expected: string, actual: string): string {
  let i = 0;
  while (i < expected.length && i < actual.length && expected[i] === actual[i]) i++;
  const lineStart = Math.max(expected.lastIndexOf('\n', i - 1), actual.lastIndexOf('\n', i - 1)) + 1;
  const exp = expected.slice(lineStart, expected.indexOf('\n', i) < 0 ? undefined : expected.indexOf('\n', i) + 1);
  const act = actual.slice(lineStart, actual.indexOf('\n', i) < 0 ? undefined : actual.indexOf('\n', i) + 1);
  if (i === expected.length) return `the output goes on past the expected end at byte ${i}: ${quote(actual.slice(i))}`;
  if (i === actual.length) return `the output ends at byte ${i} (line ${lineOf(actual, i)}); expected more: ${quote(expected.slice(i))}`;
  return `first difference at byte ${i} (line ${lineOf(expected, i)}): expected ${quote(exp)}, got ${quote(act)}`;
}

function describeExit(r: WorkerReport | null, status: number | null): string {
  const e = r?.exit;
  return `exit status ${status}${e ? ` (${e.reason}${e.detail ? `: ${e.detail}` : ''})` : ''}`;
}

export function judge(kind: 'run' | 'boot', expect: Expectations, o: WorkerOutcome, timeoutS: number): Verdict {
  if (o.killed) return { kind: 'error', type: 'killed', messages: [`the worker did not exit within ${timeoutS} s plus the grace period and was killed${o.stderr ? `; stderr: ${o.stderr.trim().slice(-500)}` : ''}`] };
  if (!o.report) {
    const how = o.signal ? `killed by ${o.signal}` : `exit status ${o.status}`;
    return { kind: 'error', type: 'worker', messages: [`the worker printed no JSON report (${how}): ${o.reportError ?? 'no output'}${o.stderr ? `; stderr: ${o.stderr.trim().slice(-1000)}` : ''}`] };
  }
  const r = o.report;
  const messages: string[] = [];
  let type = 'expectation';
  if (o.status !== expect.exit) {
    if (r.exit?.reason === 'timeout' && expect.exit !== 124) {
      type = 'timeout';
      messages.push(`timed out: no exit within ${timeoutS} s${r.virtualMs !== undefined ? ` (${r.virtualMs} ms of virtual time)` : ''}; expected exit status ${expect.exit}`);
    } else {
      messages.push(`${describeExit(r, o.status)}, expected ${expect.exit}`);
    }
  }
  const text = consoleText(kind, r);
  for (const re of expect.serial) if (!re.test(text)) messages.push(`serial: /${re.source}/ never appeared`);
  for (const re of expect.serialAbsent) {
    const m = re.exec(text);
    if (m) messages.push(`serial: /${re.source}/ appeared at line ${lineOf(text, m.index)}: ${quote(m[0])}`);
  }
  if (expect.serialFile && text !== expect.serialFile.text) messages.push(`serial differs from ${expect.serialFile.path}: ${firstDifference(expect.serialFile.text, text)}`);
  const posted = r.postCodes ?? [];
  for (const p of expect.post) if (!posted.some((x) => x.code === p.code)) messages.push(`POST ${p.label} never posted`);
  for (const p of expect.postAbsent) {
    const hit = posted.find((x) => x.code === p.code);
    if (hit) messages.push(`POST ${p.label} posted at ${hit.atMs} ms`);
  }
  const containers = r.containers ?? [];
  for (const [name, want] of Object.entries(expect.containers)) {
    const c = containers.find((x) => x.name === name);
    if (!c) messages.push(`container ${name}: did not run (ran: ${containers.map((x) => x.name).join(', ') || 'none'})`);
    else if (c.status !== want) messages.push(`container ${name}: ${c.status}, expected ${want}`);
  }
  return messages.length ? { kind: 'failure', type, messages } : { kind: 'passed' };
}
