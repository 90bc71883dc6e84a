/**
 * Suite files for `firmament test`: TOML, read with toml-eslint-parser, or
 * JSON (comments allowed), read with jsonc-parser; both keep the source
 * position of every key, so each error names file:line and the field. Every field is checked here, before anything runs.
 * The format is described in docs/test-runner.md.
 */
import { existsSync, readFileSync } from 'node:fs';
import { basename, dirname, isAbsolute, relative, resolve } from 'node:path';
import { getStaticTOMLValue, parseTOML, ParseError, type AST } from 'toml-eslint-parser';
import { getNodeValue, parseTree, printParseErrorCode, type Node as JsonNode, type ParseError as JsonParseError } from 'jsonc-parser';
import { parseFault, parseSize } from '../../machine/platform/faults.js';
import { hex2, postCodeTable } from '../../machine/platform/post-codes.js';
import type { ContainerStatus } from '../../machine/platform/handoff.js';

export class SuiteError extends Error {
  override name = 'SuiteError';
  constructor(
    readonly file: string,
    readonly line: number,
    readonly field: string,
    message: string,
  ) {
    super(line > 0 ? `${file}:${line}: ${field}: ${message}` : `${file}: ${message}`);
  }
}

export interface PostMatcher {
  code: number;
  label: string;
}

export interface Expectations {
  /** Exit status of the worker command (boot: 0 success ... 124 timeout; run: QEMU's (v << 1) | 1). */
  exit: number;
  serial: RegExp[];
  serialAbsent: RegExp[];
  /** The exact console transcript (a golden file), byte for byte. */
  serialFile: { path: string; text: string } | null;
  post: PostMatcher[];
  postAbsent: PostMatcher[];
  containers: Record<string, ContainerStatus>;
}

export interface TestSpec {
  name: string;
  /** Line of the test's [[test]] header. */
  line: number;
  /** 'run': one Multiboot image under the hypervisor (firmament run); 'boot': the whole boot path (firmament boot). */
  kind: 'run' | 'boot';
  image: string | null;
  guests: string[];
  memBytes: number | null;
  guestMemBytes: number | null;
  cpus: number;
  vcpus: number;
  cmdline: string | null;
  faults: string[];
  /** One variant per entry (each a list of fault specs, [] = none); null: no matrix. */
  faultMatrix: string[][] | null;
  clock: 'virtual' | 'realtime';
  timeoutS: number;
  retries: number;
  seed: number;
  strict: boolean;
  skip: string | null;
  expect: Expectations;
}

export interface Suite {
  name: string;
  file: string;
  tests: TestSpec[];
}

const CONTAINER_STATUSES: readonly ContainerStatus[] = ['pass', 'fail', 'fixed', 'rejected', 'timeout'];

/** Keys of a test (and of [defaults]) with what they hold, for "unknown key" hints and the docs. */
const TEST_KEYS = ['name', 'image', 'boot', 'guests', 'mem', 'guest-mem', 'cpus', 'vcpus', 'cmdline', 'faults', 'fault-matrix', 'clock', 'timeout', 'retries', 'seed', 'strict', 'skip', 'expect'] as const;
const EXPECT_KEYS = ['exit', 'serial', 'serial-absent', 'serial-file', 'post', 'post-absent', 'containers'] as const;
const TOP_KEYS = ['suite', 'defaults', 'test'] as const;

type Value = ReturnType<typeof getStaticTOMLValue>;
type Table = { [key: string]: Value };

/** Where a key path ("test.0.expect.serial.1") is in the source file. */
interface Locator {
  line(path: readonly (string | number)[]): number;
}

/** Source lines of every key of a TOML file, by path. */
class TomlLocator implements Locator {
  private readonly lines = new Map<string, number>();

  constructor(program: AST.TOMLProgram) {
    const top = program.body[0];
    for (const node of top.body) {
      if (node.type === 'TOMLTable') {
        this.lines.set(node.resolvedKey.join('.'), node.loc.start.line);
        for (const kv of node.body) this.keyValue(node.resolvedKey, kv);
      } else {
        this.keyValue([], node);
      }
    }
  }

  private keyValue(base: readonly (string | number)[], kv: AST.TOMLKeyValue): void {
    const path = [...base];
    for (const k of kv.key.keys) {
      path.push(k.type === 'TOMLBare' ? k.name : k.value);
      if (!this.lines.has(path.join('.'))) this.lines.set(path.join('.'), kv.loc.start.line);
    }
    this.content(path, kv.value);
  }

  private content(path: (string | number)[], node: AST.TOMLContentNode): void {
    this.lines.set(path.join('.'), node.loc.start.line);
    if (node.type === 'TOMLArray') node.elements.forEach((e, i) => this.content([...path, i], e));
    else if (node.type === 'TOMLInlineTable') for (const kv of node.body) this.keyValue(path, kv);
  }

  /** The line of a path, or of its nearest located parent. */
  line(path: readonly (string | number)[]): number {
    for (let n = path.length; n > 0; n--) {
      const l = this.lines.get(path.slice(0, n).join('.'));
      if (l !== undefined) return l;
    }
    return 1;
  }
}

/** Reads and checks a suite file. `checkFiles`: images and golden files must exist. */
export function loadSuite(file: string, opts: { checkFiles?: boolean } = {}): Suite {
  let source: string;
  try {
    source = readFileSync(file, 'utf8');
  } catch (e) {
    throw new SuiteError(file, 0, 'file', `cannot read the suite file: ${(e as Error).message}`);
  }
  return parseSuite(source, file, opts);
}

/** Parses a suite: JSON when the file name ends in .json, TOML otherwise. */
export function parseSuite(source: string, file: string, opts: { checkFiles?: boolean } = {}): Suite {
  return /\.json$/i.test(file) ? parseJsonSuite(source, file, opts) : parseTomlSuite(source, file, opts);
}

function parseTomlSuite(source: string, file: string, opts: { checkFiles?: boolean }): Suite {
  let program: AST.TOMLProgram;
  try {
    program = parseTOML(source);
  } catch (e) {
    if (e instanceof ParseError) throw new SuiteError(file, e.lineNumber, `column ${e.column + 1}`, `TOML syntax: ${e.message}`);
    throw e;
  }
  const reader = new SuiteReader(file, new TomlLocator(program), opts.checkFiles ?? true);
  return reader.suite(getStaticTOMLValue(program));
}

/** 1-based line of a character offset. */
function lineAt(source: string, offset: number): number {
  let line = 1;
  for (let i = 0; i < offset && i < source.length; i++) if (source.charCodeAt(i) === 10) line++;
  return line;
}

/** Source lines of every key of a JSON file, by path (the same paths as TOML's). */
class JsonLocator implements Locator {
  constructor(
    private readonly root: JsonNode,
    private readonly source: string,
  ) {}

  line(path: readonly (string | number)[]): number {
    for (let n = path.length; n >= 0; n--) {
      const node = this.find(path.slice(0, n));
      // A property's line is its key's line (the node's parent is the key/value pair).
      if (node) return lineAt(this.source, node.parent?.type === 'property' ? node.parent.offset : node.offset);
    }
    return 1;
  }

  private find(path: readonly (string | number)[]): JsonNode | undefined {
    let node: JsonNode | undefined = this.root;
    for (const seg of path) {
      if (!node) return undefined;
      if (node.type === 'object') {
        const prop: JsonNode | undefined = node.children?.find((c) => c.children?.[0]?.value === String(seg));
        node = prop?.children?.[1];
      } else if (node.type === 'array' && typeof seg === 'number') {
        node = node.children?.[seg];
      } else {
        return undefined;
      }
    }
    return node;
  }
}

function parseJsonSuite(source: string, file: string, opts: { checkFiles?: boolean }): Suite {
  const errors: JsonParseError[] = [];
  const root = parseTree(source, errors, { allowTrailingComma: false, disallowComments: false });
  const first = errors[0];
  if (first || !root) {
    const offset = first?.offset ?? 0;
    const line = lineAt(source, offset);
    const column = offset - source.lastIndexOf('\n', offset - 1);
    throw new SuiteError(file, line, `column ${column}`, `JSON syntax: ${first ? printParseErrorCode(first.error) : 'empty file'}`);
  }
  const value = getNodeValue(root) as Value;
  if (!isTable(value)) throw new SuiteError(file, lineAt(source, root.offset), 'suite', `expected a JSON object with "suite", "defaults" and "test", got ${describe(value)}`);
  const reader = new SuiteReader(file, new JsonLocator(root, source), opts.checkFiles ?? true);
  return reader.suite(value);
}

/** Shown in messages: what a value is. */
function describe(v: Value | undefined): string {
  if (v === undefined) return 'nothing';
  if (Array.isArray(v)) return 'a list';
  if (v instanceof Date) return 'a date';
  if (typeof v === 'object' && v !== null) return 'a table';
  return `${typeof v} ${JSON.stringify(v)}`;
}

const isTable = (v: Value | undefined): v is Table => typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Date);

function editDistance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0]![j] = j;
  for (let i = 1; i <= a.length; i++) for (let j = 1; j <= b.length; j++) d[i]![j] = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
  return d[a.length]![b.length]!;
}

class SuiteReader {
  private readonly dir: string;

  constructor(
    private readonly file: string,
    private readonly loc: Locator,
    private readonly checkFiles: boolean,
  ) {
    this.dir = dirname(resolve(file));
  }

  private fail(path: readonly (string | number)[], field: string, message: string): never {
    throw new SuiteError(this.file, this.loc.line(path), field, message);
  }

  private unknownKeys(t: Table, known: readonly string[], path: (string | number)[], where: string): void {
    for (const k of Object.keys(t)) {
      if (known.includes(k)) continue;
      const near = known.filter((x) => editDistance(x, k) <= 2);
      this.fail([...path, k], `${where}${k}`, `unknown key${near.length ? ` (did you mean '${near[0]}'?)` : ''}; known keys: ${known.join(', ')}`);
    }
  }

  suite(root: Table): Suite {
    this.unknownKeys(root, TOP_KEYS, [], '');
    const nameRaw = root['suite'];
    if (nameRaw !== undefined && (typeof nameRaw !== 'string' || !/^[\w.-]+$/.test(nameRaw))) this.fail(['suite'], 'suite', `expected a name of letters, digits, '.', '_' or '-', got ${describe(nameRaw)}`);
    const name = nameRaw ?? basename(this.file).replace(/\.(toml|json)$/i, '');
    const defaults = root['defaults'] ?? {};
    if (!isTable(defaults)) this.fail(['defaults'], 'defaults', `expected a table ([defaults]), got ${describe(defaults)}`);
    if ('name' in defaults) this.fail(['defaults', 'name'], 'defaults.name', 'a name belongs to one test, not to [defaults]');
    const testsRaw = root['test'];
    if (testsRaw === undefined) this.fail([], 'test', 'the suite has no tests (add [[test]] tables)');
    if (!Array.isArray(testsRaw)) this.fail(['test'], 'test', `expected [[test]] tables, got ${describe(testsRaw)}`);
    const seen = new Map<string, number>();
    const tests = testsRaw.map((t, i) => {
      if (!isTable(t)) this.fail(['test', i], `test[${i}]`, `expected a table, got ${describe(t)}`);
      const spec = this.test(t, defaults, i);
      const first = seen.get(spec.name);
      if (first !== undefined) this.fail(['test', i, 'name'], `test '${spec.name}'`, `duplicate name (first used at line ${first})`);
      seen.set(spec.name, spec.line);
      return spec;
    });
    return { name, file: this.file, tests };
  }

  /** One [[test]] with [defaults] under it: each value is read at the place it was written. */
  private test(t: Table, defaults: Table, index: number): TestSpec {
    const at = ['test', index];
    this.unknownKeys(t, TEST_KEYS, at, `test[${index}].`);
    this.unknownKeys(defaults, TEST_KEYS, ['defaults'], 'defaults.');
    const nameV = t['name'];
    if (typeof nameV !== 'string' || nameV.trim() === '') this.fail([...at, 'name'], `test[${index}].name`, nameV === undefined ? 'every test needs a name' : `expected a non-empty string, got ${describe(nameV)}`);
    const name = nameV;
    const who = `test '${name}'`;
    // A field's value and where it came from: the test, else [defaults].
    const field = (key: string): { v: Value | undefined; path: (string | number)[]; label: string } =>
      key in t ? { v: t[key], path: [...at, key], label: `${who}: ${key}` } : { v: defaults[key], path: ['defaults', key], label: `defaults.${key}` };
    const opt = <T>(key: string, read: (v: Value, path: (string | number)[], label: string) => T): T | null => {
      const f = field(key);
      return f.v === undefined ? null : read(f.v, f.path, f.label);
    };
    const image = opt('image', (v, p, l) => this.path(v, p, l));
    const boot = opt('boot', (v, p, l) => this.boolean(v, p, l)) ?? false;
    if (image !== null && boot) this.fail([...at, 'boot'], `${who}: boot`, "a test has either 'image' (one Multiboot image, as 'firmament run') or 'boot = true' (the whole boot path), not both");
    if (image === null && !boot) this.fail(at, who, "needs 'image' (a Multiboot image run under the hypervisor, as 'firmament run') or 'boot = true' (the whole boot path, as 'firmament boot')");
    const kind = boot ? 'boot' : 'run';
    const bootOnly = (key: string, why: string): void => {
      const f = field(key);
      if (kind === 'run' && f.v !== undefined && f.path[0] === 'test') this.fail(f.path, f.label, `only for boot tests (boot = true): ${why}`);
    };
    bootOnly('guests', "an image test runs its one 'image'");
    bootOnly('guest-mem', "an image test's 'mem' is the guest's RAM");
    bootOnly('faults', 'faults act on the firmware and the machine it runs on');
    bootOnly('fault-matrix', 'faults act on the firmware and the machine it runs on');
    bootOnly('strict', 'it judges POST errors and containers');
    const cmd = field('cmdline');
    if (kind === 'boot' && cmd.v !== undefined && cmd.path[0] === 'test') this.fail(cmd.path, cmd.label, "only for image tests: 'firmament boot --guest' has no per-guest command line");
    const guests = kind === 'boot' ? (opt('guests', (v, p, l) => this.list(v, p, l, (x, xp, xl) => this.path(x, xp, xl))) ?? []) : [];
    const faults = kind === 'boot' ? (opt('faults', (v, p, l) => this.list(v, p, l, (x, xp, xl) => this.fault(x, xp, xl))) ?? []) : [];
    const faultMatrix = kind === 'boot' ? opt('fault-matrix', (v, p, l) => this.faultMatrix(v, p, l)) : null;
    const clock = opt('clock', (v, p, l) => this.oneOf(v, p, l, ['virtual', 'realtime'] as const)) ?? 'virtual';
    const skipV = field('skip');
    let skip: string | null = null;
    if (skipV.v !== undefined) {
      if (typeof skipV.v === 'string' && skipV.v.trim() !== '') skip = skipV.v;
      else if (skipV.v === true) skip = 'skipped in the suite file';
      else if (skipV.v !== false) this.fail(skipV.path, skipV.label, `expected a reason (string) or true/false, got ${describe(skipV.v)}`);
    }
    const spec: TestSpec = {
      name,
      line: this.loc.line(at),
      kind,
      image,
      guests,
      memBytes: opt('mem', (v, p, l) => this.size(v, p, l)),
      guestMemBytes: kind === 'boot' ? opt('guest-mem', (v, p, l) => this.size(v, p, l)) : null,
      cpus: opt('cpus', (v, p, l) => this.integer(v, p, l, 1, 64)) ?? 1,
      vcpus: opt('vcpus', (v, p, l) => this.integer(v, p, l, 1, 64)) ?? 1,
      cmdline: kind === 'run' ? opt('cmdline', (v, p, l) => this.string(v, p, l)) : null,
      faults,
      faultMatrix,
      clock,
      timeoutS: opt('timeout', (v, p, l) => this.seconds(v, p, l)) ?? 60,
      retries: opt('retries', (v, p, l) => this.integer(v, p, l, 0, 10)) ?? 0,
      seed: opt('seed', (v, p, l) => this.integer(v, p, l, -(2 ** 31), 2 ** 31 - 1)) ?? 0,
      strict: kind === 'boot' ? (opt('strict', (v, p, l) => this.boolean(v, p, l)) ?? false) : false,
      skip,
      expect: this.expectations(t['expect'], defaults['expect'], at, who, kind),
    };
    return spec;
  }

  private expectations(own: Value | undefined, dflt: Value | undefined, at: (string | number)[], who: string, kind: 'run' | 'boot'): Expectations {
    if (own !== undefined && !isTable(own)) this.fail([...at, 'expect'], `${who}: expect`, `expected a table ([test.expect] or expect = {...}), got ${describe(own)}`);
    if (dflt !== undefined && !isTable(dflt)) this.fail(['defaults', 'expect'], 'defaults.expect', `expected a table, got ${describe(dflt)}`);
    const mine = own ?? {};
    const base = dflt ?? {};
    this.unknownKeys(mine, EXPECT_KEYS, [...at, 'expect'], `${who}: expect.`);
    this.unknownKeys(base, EXPECT_KEYS, ['defaults', 'expect'], 'defaults.expect.');
    const field = (key: string): { v: Value | undefined; path: (string | number)[]; label: string } =>
      key in mine ? { v: mine[key], path: [...at, 'expect', key], label: `${who}: expect.${key}` } : { v: base[key], path: ['defaults', 'expect', key], label: `defaults.expect.${key}` };
    const opt = <T>(key: string, read: (v: Value, path: (string | number)[], label: string) => T): T | null => {
      const f = field(key);
      return f.v === undefined ? null : read(f.v, f.path, f.label);
    };
    for (const key of ['post', 'post-absent', 'containers']) {
      const f = field(key);
      if (kind === 'run' && f.v !== undefined && f.path[0] === 'test') this.fail(f.path, f.label, 'only for boot tests (boot = true): an image test runs no firmware');
    }
    const regexes = (key: string): RegExp[] => opt(key, (v, p, l) => this.list(v, p, l, (x, xp, xl) => this.regex(x, xp, xl))) ?? [];
    const posts = (key: string): PostMatcher[] => (kind === 'boot' ? (opt(key, (v, p, l) => this.list(v, p, l, (x, xp, xl) => this.postCode(x, xp, xl))) ?? []) : []);
    return {
      // Success by default: boot exits 0; a guest that writes 0 to isa-debug-exit exits 1, as under QEMU.
      exit: opt('exit', (v, p, l) => this.integer(v, p, l, 0, 255)) ?? (kind === 'boot' ? 0 : 1),
      serial: regexes('serial'),
      serialAbsent: regexes('serial-absent'),
      serialFile: opt('serial-file', (v, p, l) => {
        const path = this.path(v, p, l);
        return { path, text: this.checkFiles ? readFileSync(path, 'latin1') : '' };
      }),
      post: posts('post'),
      postAbsent: posts('post-absent'),
      containers: kind === 'boot' ? (opt('containers', (v, p, l) => this.containers(v, p, l)) ?? {}) : {},
    };
  }

  // ---------------------------------------------------------------- value readers
  private string(v: Value, path: (string | number)[], label: string): string {
    if (typeof v !== 'string') this.fail(path, label, `expected a string, got ${describe(v)}`);
    return v;
  }

  private boolean(v: Value, path: (string | number)[], label: string): boolean {
    if (typeof v !== 'boolean') this.fail(path, label, `expected true or false, got ${describe(v)}`);
    return v;
  }

  private integer(v: Value, path: (string | number)[], label: string, min: number, max: number): number {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) this.fail(path, label, `expected a whole number from ${min} to ${max}, got ${describe(v)}`);
    return v;
  }

  private seconds(v: Value, path: (string | number)[], label: string): number {
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0 || v > 86_400) this.fail(path, label, `expected seconds (a number > 0, at most 86400), got ${describe(v)}`);
    return v;
  }

  private oneOf<T extends string>(v: Value, path: (string | number)[], label: string, options: readonly T[]): T {
    if (typeof v !== 'string' || !(options as readonly string[]).includes(v)) this.fail(path, label, `expected one of ${options.map((o) => `"${o}"`).join(', ')}, got ${describe(v)}`);
    return v as T;
  }

  private list<T>(v: Value, path: (string | number)[], label: string, item: (x: Value, p: (string | number)[], l: string) => T): T[] {
    if (!Array.isArray(v)) this.fail(path, label, `expected a list [...], got ${describe(v)}`);
    return v.map((x, i) => item(x, [...path, i], `${label}[${i}]`));
  }

  /** Paths are relative to the suite file's folder. */
  private path(v: Value, path: (string | number)[], label: string): string {
    const s = this.string(v, path, label);
    const full = isAbsolute(s) ? s : resolve(this.dir, s);
    if (this.checkFiles && !existsSync(full)) this.fail(path, label, `no such file: ${s} (${relative(process.cwd(), full) || full}; paths are relative to the suite file)`);
    return full;
  }

  private size(v: Value, path: (string | number)[], label: string): number {
    const s = typeof v === 'number' && Number.isInteger(v) ? String(v) : this.string(v, path, label);
    let n: number;
    try {
      n = parseSize(s, 'size');
    } catch (e) {
      this.fail(path, label, (e as Error).message);
    }
    if (n < 1024 * 1024) this.fail(path, label, `${s} is under 1 MiB`);
    return n;
  }

  private fault(v: Value, path: (string | number)[], label: string): string {
    const s = this.string(v, path, label);
    try {
      return parseFault(s).text;
    } catch (e) {
      this.fail(path, label, (e as Error).message);
    }
  }

  /** fault-matrix = ["none", "uart-dead", ["pit-stuck", "cmos-checksum"]]: one variant each. */
  private faultMatrix(v: Value, path: (string | number)[], label: string): string[][] {
    const entries = this.list(v, path, label, (x, xp, xl) => {
      if (x === 'none') return [];
      if (Array.isArray(x)) return this.list(x, xp, xl, (y, yp, yl) => this.fault(y, yp, yl));
      return [this.fault(x, xp, xl)];
    });
    if (entries.length === 0) this.fail(path, label, 'an empty matrix runs nothing (leave it out, or list "none")');
    const seen = new Set<string>();
    entries.forEach((e, i) => {
      const key = variantLabel(e);
      if (seen.has(key)) this.fail([...path, i], `${label}[${i}]`, `the fault set '${key}' is listed twice`);
      seen.add(key);
    });
    return entries;
  }

  private regex(v: Value, path: (string | number)[], label: string): RegExp {
    const s = this.string(v, path, label);
    try {
      // 'm': ^ and $ match at line ends, as in a log.
      return new RegExp(s, 'm');
    } catch (e) {
      this.fail(path, label, `bad regular expression /${s}/: ${(e as Error).message.replace(/^Invalid regular expression: \/.*\/[a-z]*: /s, '')}`);
    }
  }

  private postCode(v: Value, path: (string | number)[], label: string): PostMatcher {
    const table = postCodeTable();
    if (typeof v === 'number' || (typeof v === 'string' && /^0x[0-9a-f]{1,2}$/i.test(v))) {
      const code = typeof v === 'number' ? v : Number(v);
      const info = table.get(code);
      if (!info) this.fail(path, label, `${typeof v === 'number' ? hex2(v) : v} is not a POST code in firmware/post-codes.json`);
      return { code, label: `${hex2(code)} ${info.name}` };
    }
    if (typeof v === 'string') {
      const info = [...table.values()].find((c) => c.name === v.toUpperCase());
      if (!info) this.fail(path, label, `unknown POST code name '${v}' (names and codes are in firmware/post-codes.json, docs/post-codes.md)`);
      return { code: info.code, label: `${hex2(info.code)} ${info.name}` };
    }
    this.fail(path, label, `expected a POST code (0x33) or name (MEMTEST_PASS), got ${describe(v)}`);
  }

  private containers(v: Value, path: (string | number)[], label: string): Record<string, ContainerStatus> {
    if (!isTable(v)) this.fail(path, label, `expected a table of container = "status", e.g. { memtest = "pass" }, got ${describe(v)}`);
    const out: Record<string, ContainerStatus> = {};
    for (const [name, status] of Object.entries(v)) out[name] = this.oneOf(status, [...path, name], `${label}.${name}`, CONTAINER_STATUSES);
    return out;
  }
}

/** How a fault set appears in a test's id: "uart-dead+pit-stuck", or "none". */
export function variantLabel(faults: readonly string[]): string {
  return faults.length ? faults.join('+') : 'none';
}
