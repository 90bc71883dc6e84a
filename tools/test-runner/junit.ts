/**
 * JUnit XML for `firmament test`, in the shape of the Ant/Jenkins schema
 * (test/fixtures/junit.xsd): <testsuites>, one <testsuite> per suite file,
 * <testcase> with <failure>, <error> or <skipped>, and the console in
 * <system-out>. Reports are written and read (for --merge) through one model,
 * with fast-xml-parser doing the XML.
 */
import { hostname } from 'node:os';
import { XMLBuilder, XMLParser, XMLValidator } from 'fast-xml-parser';
import { shellWord, type TestResult } from './runner.js';

export type CaseOutcome = { kind: 'passed' } | { kind: 'failure' | 'error'; message: string; type: string; text: string } | { kind: 'skipped'; message: string };

export interface JunitCase {
  name: string;
  classname: string;
  timeS: number;
  outcome: CaseOutcome;
  systemOut: string | null;
  systemErr: string | null;
}

export interface JunitSuite {
  name: string;
  timestamp: string | null;
  hostname: string | null;
  timeS: number;
  properties: [string, string][];
  cases: JunitCase[];
}

export class JunitError extends Error {
  override name = 'JunitError';
}

/** JUnit consumers choke on huge logs: keep the end, which is where a failure shows. */
const MAX_LOG = 256 * 1024;

/** XML 1.0 forbids most control characters; a serial log has them (escape sequences): spell them out. */
function xmlText(s: string): string {
  // eslint-disable-next-line no-control-regex
  return s.replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f\ufffe\uffff]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`).replace(/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g, '\ufffd');
}

function tail(s: string): string {
  return s.length > MAX_LOG ? `[... ${s.length - MAX_LOG} earlier characters are in the artefacts' serial.log]\n${s.slice(-MAX_LOG)}` : s;
}

const seconds = (ms: number): number => Math.round(ms) / 1000;

/** The Ant schema's timestamp: ISO 8601 without a zone (the time is UTC). */
export function junitTimestamp(d: Date): string {
  return d.toISOString().replace(/\.\d+Z$/, '');
}

/** One <testcase> per planned run (matrix variants each their own). */
export function junitCase(r: TestResult): JunitCase {
  const classname = `firmament.${r.test.suite}`;
  const last = r.attempts[r.attempts.length - 1];
  const history = r.attempts.map((a, i) => `attempt ${i + 1}: ${a.verdict.kind === 'passed' ? 'passed' : `${a.verdict.kind}: ${a.verdict.messages.join('; ')}`} (${seconds(a.durationMs)} s)${a.artifacts ? `, artefacts in ${a.artifacts}` : ''}`);
  const systemErr = r.attempts.length > 1 || r.outcome === 'failed' || r.outcome === 'error' ? history.join('\n') : null;
  let outcome: CaseOutcome;
  if (r.outcome === 'skipped') outcome = { kind: 'skipped', message: r.test.spec.skip ?? 'skipped' };
  else if (!last || last.verdict.kind === 'passed') outcome = { kind: 'passed' };
  else {
    const text = [...last.verdict.messages, '', `command: ${last.command.map(shellWord).join(' ')}`, ...(last.artifacts ? [`artefacts: ${last.artifacts}`] : [])].join('\n');
    outcome = { kind: last.verdict.kind, message: last.verdict.messages[0] ?? 'failed', type: last.verdict.type, text };
  }
  return { name: r.test.id, classname, timeS: seconds(r.durationMs), outcome, systemOut: last ? last.console : null, systemErr };
}

export function junitSuites(results: readonly TestResult[], suites: readonly { name: string; file: string }[], meta: { startedAt: Date; shard: string | null; wallMs: number }): JunitSuite[] {
  return suites.map((s) => {
    const cases = results.filter((r) => r.test.suite === s.name).map(junitCase);
    return {
      name: s.name,
      timestamp: junitTimestamp(meta.startedAt),
      hostname: hostname(),
      timeS: seconds(meta.wallMs),
      properties: [['suite-file', s.file], ...(meta.shard ? ([['shard', meta.shard]] as [string, string][]) : [])],
      cases,
    };
  });
}

type Counts = { tests: number; failures: number; errors: number; skipped: number };
function counts(cases: readonly JunitCase[]): Counts {
  return {
    tests: cases.length,
    failures: cases.filter((c) => c.outcome.kind === 'failure').length,
    errors: cases.filter((c) => c.outcome.kind === 'error').length,
    skipped: cases.filter((c) => c.outcome.kind === 'skipped').length,
  };
}

type XmlNode = Record<string, unknown>;

export function junitXml(suites: readonly JunitSuite[], name = 'firmament test'): string {
  const total = counts(suites.flatMap((s) => s.cases));
  const caseNode = (c: JunitCase): XmlNode => {
    const node: XmlNode = { '@_name': xmlText(c.name), '@_classname': xmlText(c.classname), '@_time': c.timeS.toFixed(3) };
    if (c.outcome.kind === 'skipped') node['skipped'] = { '@_message': xmlText(c.outcome.message) };
    else if (c.outcome.kind !== 'passed') node[c.outcome.kind] = { '@_message': xmlText(c.outcome.message), '@_type': xmlText(c.outcome.type), '#text': xmlText(c.outcome.text) };
    if (c.systemOut) node['system-out'] = xmlText(tail(c.systemOut));
    if (c.systemErr) node['system-err'] = xmlText(c.systemErr);
    return node;
  };
  const suiteNode = (s: JunitSuite, id: number): XmlNode => {
    const n = counts(s.cases);
    return {
      '@_name': xmlText(s.name),
      '@_tests': n.tests,
      '@_failures': n.failures,
      '@_errors': n.errors,
      '@_skipped': n.skipped,
      '@_time': s.timeS.toFixed(3),
      ...(s.timestamp ? { '@_timestamp': s.timestamp } : {}),
      ...(s.hostname ? { '@_hostname': xmlText(s.hostname) } : {}),
      '@_id': id,
      ...(s.properties.length ? { properties: { property: s.properties.map(([k, v]) => ({ '@_name': xmlText(k), '@_value': xmlText(v) })) } } : {}),
      testcase: s.cases.map(caseNode),
    };
  };
  const doc = {
    '?xml': { '@_version': '1.0', '@_encoding': 'UTF-8' },
    testsuites: {
      '@_name': name,
      '@_tests': total.tests,
      '@_failures': total.failures,
      '@_errors': total.errors,
      '@_skipped': total.skipped,
      '@_time': suites.reduce((t, s) => t + s.timeS, 0).toFixed(3),
      testsuite: suites.map(suiteNode),
    },
  };
  return new XMLBuilder({ ignoreAttributes: false, attributeNamePrefix: '@_', textNodeName: '#text', format: true, suppressEmptyNode: true }).build(doc) as string;
}

// ---------------------------------------------------------------- reading, for --merge

const ARRAYS = new Set(['testsuite', 'testcase', 'property', 'failure', 'error', 'skipped', 'system-out', 'system-err']);

/** Reads a JUnit report (ours or another tool's in the same schema); errors name the file and where. */
export function parseJunit(xml: string, file: string): JunitSuite[] {
  const valid = XMLValidator.validate(xml);
  if (valid !== true) throw new JunitError(`${file}:${valid.err.line}:${valid.err.col}: not well-formed XML: ${valid.err.msg}`);
  const doc = new XMLParser({ ignoreAttributes: false, attributeNamePrefix: '@_', textNodeName: '#text', parseTagValue: false, parseAttributeValue: false, trimValues: false, isArray: (n) => ARRAYS.has(n) }).parse(xml) as XmlNode;
  let suites: XmlNode[];
  if (doc['testsuites'] !== undefined) suites = ((doc['testsuites'] as XmlNode)['testsuite'] as XmlNode[] | undefined) ?? [];
  else if (doc['testsuite'] !== undefined) suites = doc['testsuite'] as XmlNode[];
  else throw new JunitError(`${file}: not a JUnit report: the root element must be <testsuites> or <testsuite>`);
  const str = (n: XmlNode, k: string): string | undefined => (typeof n[`@_${k}`] === 'string' ? (n[`@_${k}`] as string) : undefined);
  const text = (v: unknown): string => (typeof v === 'string' ? v : typeof v === 'object' && v !== null && typeof (v as XmlNode)['#text'] === 'string' ? ((v as XmlNode)['#text'] as string) : '');
  return suites.map((s, si) => {
    const name = str(s, 'name');
    if (name === undefined) throw new JunitError(`${file}: testsuite ${si + 1} has no name attribute`);
    const props = (((s['properties'] as XmlNode[] | XmlNode | undefined) && ((Array.isArray(s['properties']) ? s['properties'][0] : s['properties']) as XmlNode)['property']) as XmlNode[] | undefined) ?? [];
    const cases = ((s['testcase'] as XmlNode[] | undefined) ?? []).map((c, ci): JunitCase => {
      const cname = str(c, 'name');
      if (cname === undefined) throw new JunitError(`${file}: testsuite '${name}', testcase ${ci + 1} has no name attribute`);
      const f = (c['failure'] as XmlNode[] | undefined)?.[0];
      const e = (c['error'] as XmlNode[] | undefined)?.[0];
      const sk = (c['skipped'] as XmlNode[] | undefined)?.[0];
      const bad = f ?? e;
      const outcome: CaseOutcome = bad
        ? { kind: f ? 'failure' : 'error', message: str(bad, 'message') ?? '', type: str(bad, 'type') ?? '', text: text(bad) }
        : sk !== undefined
          ? { kind: 'skipped', message: typeof sk === 'object' ? (str(sk, 'message') ?? '') : '' }
          : { kind: 'passed' };
      const time = Number(str(c, 'time') ?? '0');
      if (!Number.isFinite(time) || time < 0) throw new JunitError(`${file}: testcase '${cname}': time="${str(c, 'time')}" is not a number of seconds`);
      const out = (c['system-out'] as unknown[] | undefined)?.map(text).join('') ?? '';
      const err = (c['system-err'] as unknown[] | undefined)?.map(text).join('') ?? '';
      return { name: cname, classname: str(c, 'classname') ?? name, timeS: time, outcome, systemOut: out || null, systemErr: err || null };
    });
    const time = Number(str(s, 'time') ?? '0');
    return {
      name,
      timestamp: str(s, 'timestamp') ?? null,
      hostname: str(s, 'hostname') ?? null,
      timeS: Number.isFinite(time) ? time : 0,
      properties: props.map((p) => [str(p, 'name') ?? '', str(p, 'value') ?? ''] as [string, string]),
      cases,
    };
  });
}

/**
 * Shard reports into one: suites of the same name become one suite (its time
 * the sum of the shards'), and a test case present twice is an error (the
 * same shard merged twice, or shards that overlap).
 */
export function mergeJunit(reports: readonly { file: string; suites: JunitSuite[] }[]): JunitSuite[] {
  const merged = new Map<string, JunitSuite & { from: Map<string, string>; files: Set<string> }>();
  for (const { file, suites } of reports) {
    for (const s of suites) {
      let m = merged.get(s.name);
      if (!m) {
        m = { ...s, properties: s.properties.filter(([k]) => k !== 'shard'), cases: [], timeS: 0, from: new Map(), files: new Set() };
        merged.set(s.name, m);
      }
      m.timeS += s.timeS;
      m.files.add(file);
      if (s.timestamp && (!m.timestamp || s.timestamp < m.timestamp)) m.timestamp = s.timestamp;
      for (const c of s.cases) {
        const key = `${c.classname}\u0000${c.name}`;
        const first = m.from.get(key);
        if (first !== undefined) throw new JunitError(`test case '${c.classname} ${c.name}' is in both ${first} and ${file} (the same shard twice, or shards that overlap)`);
        m.from.set(key, file);
        m.cases.push(c);
      }
    }
  }
  return [...merged.values()].map(({ from: _from, files, ...s }) => ({ ...s, properties: [...s.properties, ['merged-from', `${files.size} reports`] as [string, string]] }));
}
