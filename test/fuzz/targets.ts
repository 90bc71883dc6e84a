/**
 * Fuzz targets for every parser of outside input (issue 11), as fast-check
 * properties: the Multiboot/ELF loader, the OCI index and manifest parsers,
 * the snapshot codec (its exported API only), the monitor protocol (request
 * validation and session dispatch) and the hypercall ABI (on a fake vCPU).
 *
 * Each property holds when the code under test either succeeds with a
 * well-formed result or rejects the input with its own error type and a
 * message. Anything else (a TypeError, a RangeError from a typed array, a
 * throw from the monitor's handle(), a hypercall touching more than RAX) is
 * a finding. Seeds are real inputs (the built guests, the OCI layout),
 * mutated byte-wise and structurally.
 */
import fc from 'fast-check';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseMultibootImage, MultibootError, MultibootInfoError, buildMultibootInfo, qemuPcMemoryMap } from '../../hypervisor/multiboot/index.js';
import { chooseMbiRegion } from '../../hypervisor/multiboot/mbi-placement.js';
import { OciDocumentError, parseOciIndex, parseOciManifest, parseRegistryCatalog } from '../../machine/platform/oci-documents.js';
import { decodeSnapshot, encodeSnapshot, SnapshotFormatError } from '../../machine/snapshot/codec.js';
import type { StateRecord, StateValue } from '../../machine/state.js';
import { createBootMachine } from '../../vmm/boot.js';
import type { PcMachine } from '../../machine/platform/pc.js';
import { DebugSession } from '../../machine/debug/session.js';
import { checkRequest } from '../../machine/debug/request-schema.js';
import { COMMAND_NAMES } from '../../machine/debug/protocol.js';
import { SNAPSHOT_PARTS } from '../../machine/inspect/snapshot.js';
import { handleHypercall, HC_ENOSYS, HC_VERSION, HYPERCALL } from '../../hypervisor/hypercalls.js';
import type { Vcpu, Vm } from '../../hypervisor/vm.js';
import { REG } from '../../machine/cpu/unicorn/constants.js';
import { PROJECT_ROOT } from '../../machine/cpu/unicorn/locate.js';

export interface FuzzResult {
  inputs: number;
  failed: boolean;
  /** The shrunk failing input and what went wrong, when failed. */
  counterexample: string | null;
  error: string | null;
  /** How the inputs ended (e.g. "parsed", "rejected: e_phoff"): shows how deep the inputs reach. */
  outcomes: Record<string, number>;
}

export interface FuzzTarget {
  name: string;
  check(params: { numRuns: number; seed: number }): FuzzResult;
}

/** A target from a property builder; `close` releases what the property built (a machine). */
type Outcome = (what: string) => void;

function target<Ts extends [unknown, ...unknown[]]>(name: string, build: (outcome: Outcome) => { property: fc.IPropertyWithHooks<Ts>; close(): void }): FuzzTarget {
  return {
    name,
    check(params) {
      const outcomes: Record<string, number> = {};
      const { property, close } = build((what) => void (outcomes[what] = (outcomes[what] ?? 0) + 1));
      try {
        const r = fc.check(property, params);
        return { inputs: r.numRuns, failed: r.failed, counterexample: r.failed ? fc.stringify(r.counterexample).slice(0, 4000) : null, error: r.failed ? String((r.errorInstance as Error | undefined)?.message ?? r.errorInstance).slice(0, 1000) : null, outcomes };
      } finally {
        close();
      }
    },
  };
}

class Finding extends Error {
  override name = 'Finding';
}

/** Rejections of these types, with a message, are the parser doing its job. */
function expectOwnError(e: unknown, allowed: readonly (abstract new (...a: never[]) => Error)[]): void {
  if (allowed.some((c) => e instanceof c) && (e as Error).message.length > 0) return;
  throw new Finding(`unexpected ${(e as Error)?.name ?? typeof e}: ${(e as Error)?.message ?? String(e)}`);
}

// ------------------------------------------------------------ byte mutation

const INTERESTING_U32 = [0, 1, 0x7f, 0x80, 0xff, 0x100, 0x1000, 0xffff, 0x10000, 0x100000, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff, 0x1badb002, 0x00010003, 0xe4524ffb];

type Edit = { at: number; kind: 'byte' | 'u32' | 'u16'; value: number };
const edit: fc.Arbitrary<Edit> = fc.record({
  // Half the edits land in the first 512 bytes: headers, where the fields are.
  at: fc.oneof(fc.nat(511), fc.nat()),
  kind: fc.constantFrom('byte' as const, 'u32' as const, 'u16' as const),
  value: fc.oneof(fc.nat(255), fc.constantFrom(...INTERESTING_U32), fc.nat()),
});

function applyEdits(seed: Uint8Array, edits: readonly Edit[], truncate: number | null, extend: number): Uint8Array {
  const len = Math.max(0, truncate === null ? seed.length : Math.min(seed.length, truncate)) + extend;
  const out = new Uint8Array(len);
  out.set(seed.subarray(0, Math.min(seed.length, len)));
  if (len === 0) return out;
  const dv = new DataView(out.buffer);
  for (const e of edits) {
    const at = e.at % len;
    if (e.kind === 'byte' || at + 4 > len) out[at] = e.value & 0xff;
    else if (e.kind === 'u16') dv.setUint16(at, e.value & 0xffff, true);
    else dv.setUint32(at, e.value >>> 0, true);
  }
  return out;
}

/** A seed, then up to 8 edits, sometimes truncated or extended with zeros. */
const mutationOf = (seeds: readonly Uint8Array[]): fc.Arbitrary<Uint8Array> =>
  fc
    .record({
      seed: fc.nat(seeds.length - 1),
      edits: fc.array(edit, { maxLength: 8 }),
      // One input in five is cut short (headers, then anywhere).
      truncate: fc.oneof({ weight: 4, arbitrary: fc.constant(null) }, { weight: 1, arbitrary: fc.oneof(fc.nat(64), fc.nat(8192), fc.nat()) }),
      extend: fc.oneof({ weight: 9, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.nat(256) }),
    })
    .map(({ seed, edits, truncate, extend }) => applyEdits(seeds[seed]!, edits, truncate, extend));

const anyBytes = (seeds: readonly Uint8Array[]): fc.Arbitrary<Uint8Array> => fc.oneof({ weight: 8, arbitrary: mutationOf(seeds) }, { weight: 1, arbitrary: fc.uint8Array({ maxLength: 512 }) });

// ------------------------------------------------------------ Multiboot / ELF loader

function guestSeeds(): Uint8Array[] {
  const dir = join(PROJECT_ROOT, 'images/build/guests');
  return readdirSync(dir)
    .filter((f) => f.endsWith('.elf') || f.endsWith('.elf64'))
    .sort()
    .map((f) => new Uint8Array(readFileSync(join(dir, f))));
}

/** A Multiboot a.out-kludge image, as small as they come (the ELF seeds cover the other path). */
function kludgeSeed(): Uint8Array {
  const img = new Uint8Array(64);
  const dv = new DataView(img.buffer);
  const flags = 0x00010003;
  dv.setUint32(0, 0x1badb002, true);
  dv.setUint32(4, flags, true);
  dv.setUint32(8, -(0x1badb002 + flags) >>> 0, true);
  for (const [o, v] of [[12, 0x100000], [16, 0x100000], [20, 0x100040], [24, 0x101000], [28, 0x100020]] as const) dv.setUint32(o, v, true);
  img.fill(0xf4, 32);
  return img;
}

const RAM_SIZES = [2 << 20, 16 << 20, 64 << 20];

const multiboot = target('multiboot', (outcome) => {
    const seeds = [...guestSeeds(), kludgeSeed()];
    const property = fc.property(anyBytes(seeds), fc.constantFrom(...RAM_SIZES), (bytes, ramSize) => {
      let plan;
      try {
        plan = parseMultibootImage(bytes, 'fuzz.elf', { ramSize });
      } catch (e) {
        expectOwnError(e, [MultibootError]);
        return outcome(`rejected: ${(e as MultibootError).field.replace(/\d+/g, '#')}`);
      }
      outcome('parsed');
      // A plan that parsed must be loadable as planned: inside RAM, entry inside a segment's space.
      for (const s of plan.segments) {
        if (!(Number.isInteger(s.paddr) && s.paddr >= 0 && s.paddr + s.memSize <= ramSize)) throw new Finding(`segment [0x${s.paddr.toString(16)}, +0x${s.memSize.toString(16)}) outside RAM 0x${ramSize.toString(16)}`);
        if (s.fileBytes.length > s.memSize) throw new Finding(`segment file bytes ${s.fileBytes.length} exceed memSize ${s.memSize}`);
      }
      try {
        const placeAt = chooseMbiRegion(plan.segments, ramSize, 'fuzz.elf');
        const mbi = buildMultibootInfo({ memoryMap: qemuPcMemoryMap(ramSize), cmdline: 'fuzz.elf ', bootLoaderName: 'qemu', placeAt });
        for (const s of plan.segments) if (mbi.base < s.paddr + s.memSize && s.paddr < mbi.base + mbi.bytes.length) throw new Finding(`MBI at 0x${mbi.base.toString(16)} overlaps a segment at 0x${s.paddr.toString(16)}`);
      } catch (e) {
        if (e instanceof Finding) throw e;
        expectOwnError(e, [MultibootError, MultibootInfoError]);
      }
    });
    return { property, close: () => {} };
});

// ------------------------------------------------------------ OCI documents

function ociSeeds(): { index: Uint8Array[]; manifest: Uint8Array[] } {
  const layout = join(PROJECT_ROOT, 'images/oci/firmament');
  const indexBytes = new Uint8Array(readFileSync(join(layout, 'index.json')));
  const index = JSON.parse(Buffer.from(indexBytes).toString('utf8')) as { manifests: { digest: string }[] };
  const manifests = index.manifests.map((m) => new Uint8Array(readFileSync(join(layout, 'blobs/sha256', m.digest.slice(7)))));
  return { index: [indexBytes], manifest: manifests };
}

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

/** Replaces one value somewhere in a JSON tree (the path is drawn from the tree itself). */
function replaceAt(tree: Json, pick: number, value: Json): Json {
  let n = pick;
  const walk = (v: Json): Json => {
    if (n-- === 0) return value;
    if (Array.isArray(v)) return v.map(walk);
    if (v !== null && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, walk(x)]));
    return v;
  };
  return walk(tree);
}

const jsonMutationOf = (seeds: readonly Uint8Array[]): fc.Arbitrary<Uint8Array> => {
  const trees = seeds.map((s) => JSON.parse(Buffer.from(s).toString('utf8')) as Json);
  const odd: fc.Arbitrary<Json> = fc.oneof(
    fc.jsonValue() as fc.Arbitrary<Json>,
    fc.constantFrom<Json>(-1, 1e308, 2 ** 53, 0.5, '', 'sha256:', `sha256:${'A'.repeat(64)}`, `sha256:${'0'.repeat(63)}`, '../../etc/passwd', null, [], {}, 'x'.repeat(300)),
  );
  return fc
    .record({ seed: fc.nat(trees.length - 1), edits: fc.array(fc.record({ pick: fc.nat(64), value: odd }), { minLength: 1, maxLength: 3 }) })
    .map(({ seed, edits }) => new TextEncoder().encode(JSON.stringify(edits.reduce<Json>((t, e) => replaceAt(t, e.pick, e.value as Json), trees[seed]!))));
};

const oci = target('oci-documents', (outcome) => {
    const { index, manifest } = ociSeeds();
    const catalog = [new TextEncoder().encode(JSON.stringify({ repositories: ['firmament/cmos', 'firmament/uart', 'other/x'] }))];
    const doc = fc.oneof(
      fc.record({ kind: fc.constant('index' as const), bytes: fc.oneof(jsonMutationOf(index), anyBytes(index)) }),
      fc.record({ kind: fc.constant('manifest' as const), bytes: fc.oneof(jsonMutationOf(manifest), anyBytes(manifest)) }),
      fc.record({ kind: fc.constant('catalog' as const), bytes: fc.oneof(jsonMutationOf(catalog), anyBytes(catalog)) }),
    );
    const digestOk = (d: string): boolean => /^sha256:[0-9a-f]{64}$/.test(d);
    const property = fc.property(doc, ({ kind, bytes }) => {
      try {
        if (kind === 'index') {
          const r = parseOciIndex(bytes, 'index.json');
          if (!r.manifests.every((m) => digestOk(m.digest) && Number.isSafeInteger(m.size) && m.size >= 0)) throw new Finding('index accepted a bad descriptor');
        } else if (kind === 'manifest') {
          const r = parseOciManifest(bytes, 'manifest');
          if (![r.config, ...r.layers].every((d) => digestOk(d.digest) && Number.isSafeInteger(d.size) && d.size >= 0)) throw new Finding('manifest accepted a bad descriptor');
        } else {
          for (const name of parseRegistryCatalog(bytes, 'catalog')) if (name.includes('..') || name.startsWith('/')) throw new Finding(`catalog accepted repository name ${JSON.stringify(name)}`);
        }
        outcome(`${kind} accepted`);
      } catch (e) {
        if (e instanceof Finding) throw e;
        expectOwnError(e, [OciDocumentError]);
        outcome(`${kind} rejected`);
      }
    });
    return { property, close: () => {} };
});

// ------------------------------------------------------------ snapshot codec

/**
 * Keys of generated records. '$bytes' is left out: the codec writes a byte section as
 * {"$bytes": n}, so a record that is exactly {"$bytes": <number>} cannot round-trip
 * (docs/security.md, known limits); machine state never has such a key.
 */
const stateKey = fc.string({ maxLength: 8 }).filter((k) => k !== '__proto__' && k !== '$bytes');
const stateValue: fc.Arbitrary<StateValue> = fc.letrec<{ v: StateValue }>((tie) => ({
  v: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.integer(),
    fc.double({ noNaN: true, noDefaultInfinity: true }).filter((d) => !Object.is(d, -0)),
    fc.string({ maxLength: 16 }),
    fc.boolean(),
    fc.constant(null),
    fc.uint8Array({ maxLength: 64 }),
    fc.array(tie('v'), { maxLength: 4 }),
    fc.dictionary(stateKey, tie('v'), { maxKeys: 4 }),
  ),
})).v;
const stateRecord: fc.Arbitrary<StateRecord> = fc.dictionary(stateKey, stateValue, { maxKeys: 6 });

/** A state value as text, for equality: prototypes aside, bytes as hex. */
function canonical(v: StateValue): string {
  if (v instanceof Uint8Array) return `bytes(${Buffer.from(v).toString('hex')})`;
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (v !== null && typeof v === 'object') return `{${Object.entries(v).map(([k, x]) => `${JSON.stringify(k)}:${canonical(x)}`).join(',')}}`;
  return JSON.stringify(v);
}

const snapshot = target('snapshot-codec', (outcome) => {
    const seeds = fc.sample(stateRecord, { numRuns: 32, seed: 11 }).map((r) => encodeSnapshot(r));
    const input = fc.oneof(
      { weight: 1, arbitrary: stateRecord.map((r) => ({ record: r as StateRecord | null, bytes: encodeSnapshot(r) })) },
      { weight: 4, arbitrary: anyBytes(seeds).map((bytes) => ({ record: null as StateRecord | null, bytes })) },
    );
    const property = fc.property(input, ({ record, bytes }) => {
      let decoded: StateRecord;
      try {
        decoded = decodeSnapshot(bytes);
      } catch (e) {
        if (record) throw new Finding(`a freshly encoded snapshot does not decode: ${(e as Error).message}`);
        expectOwnError(e, [SnapshotFormatError]);
        return outcome(`rejected: ${(e as SnapshotFormatError).field.replace(/\d+/g, '#')}`);
      }
      outcome(record ? 'round trip' : 'mutated, decoded');
      if (decoded === null || typeof decoded !== 'object' || Array.isArray(decoded)) throw new Finding('decoded root is not a record');
      // What was encoded comes back the same.
      if (record && canonical(decoded) !== canonical(record)) throw new Finding(`round trip changed the record: ${canonical(record)} -> ${canonical(decoded)}`);
    });
    return { property, close: () => {} };
});

// ------------------------------------------------------------ monitor protocol

const ARG_KEYS = ['cpu', 'address', 'length', 'space', 'width', 'count', 'before', 'bits', 'limit', 'kinds', 'tailBytes', 'spec', 'id', 'text', 'parts', 'memory', 'disassembly', 'pageWalk', 'events', 'consoles', 'timeline', 'access', 'user', 'includeConsoleBytes'] as const;

const argValue: fc.Arbitrary<unknown> = fc.letrec<{ v: unknown }>((tie) => ({
  v: fc.oneof(
    { depthSize: 'small' },
    fc.integer({ min: -5, max: 300 }),
    fc.constantFrom(0, 1, 4, 16, 64, 65536, 1e9, 2 ** 53, -1, 0.5, 1e308),
    fc.constantFrom('0x0', '0x1000', '4K', '0xfff0', 'phys 0x100000', 'p:0x1000', 'post 0x33', 'post:MEMTEST_PASS', 'lin 0xfff0', '0x8000+256', 'physical', 'virtual', 'read', 'write', 'fetch', 'cpu', 'memory', 'zz', '', '0xffffffffffffffff', '\u0000'),
    fc.string({ maxLength: 12 }),
    fc.boolean(),
    fc.constant(null),
    fc.array(tie('v'), { maxLength: 3 }),
    fc.dictionary(fc.constantFrom(...ARG_KEYS), tie('v'), { maxKeys: 4 }),
  ),
})).v;

const address: fc.Arbitrary<string | number> = fc.oneof(
  fc.nat(0xffffffff),
  fc.constantFrom('0x0', '0xfff0', '0xffff0', '0x100000', '4K', '0xffffffff80000000', '0xfee00000', '0xffffffffffffffff'),
  fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }).map((b) => `0x${b.toString(16)}`),
);
const opt = <T extends Record<string, fc.Arbitrary<unknown>>>(fields: T, required: (keyof T)[] = []) => fc.record(fields, { requiredKeys: required as never[] });
const memoryArgs = opt({ space: fc.constantFrom('physical', 'virtual'), address, length: fc.nat(4096), width: fc.integer({ min: 1, max: 64 }) }, ['space', 'address', 'length']);
const disasmArgs = opt({ address, count: fc.nat(64), before: fc.nat(16), bits: fc.constantFrom(16, 32, 64) });
const eventsArgs = opt({ limit: fc.nat(500), kinds: fc.array(fc.constantFrom('hlt', 'wake', 'io', 'debugcon', 'x'), { maxLength: 3 }), includeConsoleBytes: fc.boolean() });
const cpuIndex = fc.nat(2);
const breakSpec = fc.oneof(address.map(String), fc.constantFrom('phys 0x100000', 'p:0xfff0', 'post 0x33', 'post:MEMTEST_PASS', 'lin 0xfff0', 'post 0xzz', 'phys', 'post NOPE'), fc.string({ maxLength: 12 }));
const watchSpec = fc.oneof(fc.tuple(address, fc.nat(2 << 20)).map(([a, l]) => `${a}+${l}`), fc.tuple(fc.nat(0x4000000), fc.nat(256)).map(([a, l]) => `0x${a.toString(16)} ${l}`), fc.string({ maxLength: 12 }));

/** Requests that pass the schema (most of them): they reach the commands themselves. */
const VALID_ARGS: { [K in (typeof COMMAND_NAMES)[number]]: fc.Arbitrary<unknown> } = {
  hello: fc.constant({}),
  status: fc.constant({}),
  snapshot: opt({ cpu: cpuIndex, parts: fc.subarray([...SNAPSHOT_PARTS]), memory: memoryArgs, disassembly: disasmArgs, pageWalk: fc.option(opt({ address, access: fc.constantFrom('read', 'write', 'fetch'), user: fc.boolean() }, ['address'])), events: eventsArgs, consoles: opt({ tailBytes: fc.nat(100_000) }), timeline: opt({ limit: fc.nat(600) }) }),
  cpu: opt({ cpu: cpuIndex }),
  memory: memoryArgs.chain((m) => cpuIndex.map((cpu) => ({ ...m, cpu }))),
  translate: opt({ address, cpu: cpuIndex, access: fc.constantFrom('read', 'write', 'fetch'), user: fc.boolean() }, ['address']),
  disasm: disasmArgs.chain((d) => cpuIndex.map((cpu) => ({ ...d, cpu }))),
  timeline: opt({ limit: fc.nat(600) }),
  events: eventsArgs,
  consoles: opt({ tailBytes: fc.nat(100_000) }),
  vcpus: fc.constant({}),
  pause: fc.constant({}),
  resume: fc.constant({}),
  step: opt({ cpu: cpuIndex, count: fc.integer({ min: 1, max: 64 }) }),
  'run-to-mode-switch': fc.constant({}),
  break: opt({ spec: breakSpec }, ['spec']),
  delete: opt({ id: fc.nat(50) }, ['id']),
  breakpoints: fc.constant({}),
  watch: opt({ spec: watchSpec }, ['spec']),
  unwatch: opt({ id: fc.nat(50) }, ['id']),
  'serial-input': opt({ text: fc.string({ maxLength: 40 }) }, ['text']),
  stop: fc.constant({}),
  'snapshot-save': opt({ name: fc.string({ minLength: 1, maxLength: 12 }), vm: fc.string({ maxLength: 8 }), force: fc.boolean() }, ['name']),
  'snapshot-load': opt({ name: fc.string({ minLength: 1, maxLength: 12 }), vm: fc.string({ maxLength: 8 }) }, ['name']),
  clone: opt({ count: fc.integer({ min: -2, max: 80 }), vm: fc.string({ maxLength: 8 }), from: fc.string({ maxLength: 8 }), name: fc.string({ maxLength: 8 }) }, ['count']),
  backup: opt({ to: fc.string({ minLength: 1, maxLength: 12 }), vm: fc.string({ maxLength: 8 }), force: fc.boolean() }, ['to']),
  migrate: opt({ uri: fc.string({ minLength: 1, maxLength: 24 }), vm: fc.string({ maxLength: 8 }), downtimeLimitMs: fc.integer({ min: 1, max: 100 }) }, ['uri']),
  'profile-set': opt({ vm: fc.string({ maxLength: 8 }), profile: fc.jsonValue() }, ['profile']),
  'profile-get': opt({ vm: fc.string({ maxLength: 8 }) }),
  'profile-learn': opt({ vm: fc.string({ maxLength: 8 }), forMs: fc.integer({ min: 1, max: 50 }), apply: fc.boolean() }, ['forMs']),
  anomalies: opt({ since: fc.nat(10), limit: fc.nat(10) }),
  update: opt({ to: fc.string({ minLength: 1, maxLength: 12 }), timeoutMs: fc.integer({ min: 1, max: 60_000 }) }),
};
const validRequest = fc.constantFrom(...COMMAND_NAMES).chain((cmd) => fc.record({ id: fc.nat(1000), cmd: fc.constant(cmd), args: VALID_ARGS[cmd] }));

const monitorRequest: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 8, arbitrary: validRequest },
  { weight: 1, arbitrary: fc.anything() },
  { weight: 1, arbitrary: fc.jsonValue() },
  {
    weight: 6,
    arbitrary: fc.record(
      {
        id: fc.oneof(fc.integer(), fc.string({ maxLength: 8 }), fc.constant(null), fc.double()),
        cmd: fc.oneof({ weight: 8, arbitrary: fc.constantFrom(...COMMAND_NAMES) }, { weight: 1, arbitrary: fc.constantFrom('constructor', '__proto__', 'toString', 'hasOwnProperty', '', 'HELLO') }, { weight: 1, arbitrary: fc.string({ maxLength: 10 }) }),
        args: fc.oneof({ weight: 6, arbitrary: fc.dictionary(fc.constantFrom(...ARG_KEYS), argValue, { maxKeys: 5 }) }, { weight: 1, arbitrary: argValue }),
      },
      { requiredKeys: ['cmd'] },
    ),
  },
);

const monitor = target('monitor-protocol', (outcome) => {
    let machine: PcMachine | null = null;
    let session: DebugSession | null = null;
    const open = (): DebugSession => {
      // A `stop` ends the machine: the next input gets a fresh one, so commands keep reaching a live machine.
      if (session && !(machine as PcMachine | null)?.exit) return session;
      (session as DebugSession | null)?.close();
      (machine as PcMachine | null)?.close();
      machine = createBootMachine({ memBytes: 64 * 1024 * 1024, cpus: 1, faults: [], pace: 'virtual' });
      session = new DebugSession(machine, { label: 'fuzz' });
      session.debugger.pause();
      return session;
    };
    const property = fc.property(monitorRequest, (req) => {
      const s = open();
      let r;
      try {
        r = s.handle(req);
      } catch (e) {
        throw new Finding(`handle() threw ${(e as Error).name}: ${(e as Error).message}`);
      }
      const check = checkRequest(req);
      if (r.ok !== true && r.ok !== false) throw new Finding('response without ok');
      if (r.ok && !check.ok) throw new Finding(`an invalid request was executed: ${check.error}`);
      outcome(r.ok ? 'executed' : check.ok ? 'valid, failed in the command' : 'rejected by the schema');
      if (!r.ok && (typeof r.error !== 'string' || r.error.length === 0)) throw new Finding('an error response without a message');
      const id = check.ok ? check.request.id : check.id;
      if (id !== undefined && r.id !== id) throw new Finding(`id ${String(id)} came back as ${String(r.id)}`);
      // The session's answer must serialize for the socket.
      JSON.stringify(r, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v));
      // Keep the machine in a known state for the next input: no breakpoints or watches pile up, no pending stop.
      if (check.ok && ['break', 'watch', 'stop', 'resume', 'run-to-mode-switch', 'serial-input'].includes(check.request.cmd)) {
        session!.debugger.clearBreakpoints();
        session!.debugger.clearWatches();
      }
    });
    return {
      property,
      close: () => {
        (session as DebugSession | null)?.close();
        (machine as PcMachine | null)?.close();
        session = null;
        machine = null;
      },
    };
});

// ------------------------------------------------------------ hypercall ABI

interface FakeRegs {
  [reg: number]: bigint;
}

const u64 = fc.oneof(fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), fc.constantFrom(0n, 1n, 2n, 3n, 4n, 5n, 0xffn, 0x100n, 2n ** 32n, 2n ** 32n + 1n, 2n ** 63n, 2n ** 64n - 1n));

const hypercall = target('hypercall-abi', (outcome) => {
    const property = fc.property(fc.record({ rax: u64, rbx: u64, rcx: u64, rdx: u64, vcpu: fc.nat(63), serial: fc.string({ maxLength: 8 }) }), (c) => {
      const regs: FakeRegs = { [REG.RAX]: c.rax, [REG.RBX]: c.rbx, [REG.RCX]: c.rcx, [REG.RDX]: c.rdx };
      const writes: number[] = [];
      let stops = 0;
      let stopped: { reason: string; code: number } | null = null;
      let serialOut = '';
      const vcpu = {
        index: c.vcpu,
        cpu: {
          engine: {
            readReg: (id: number): bigint => {
              if (!(id in regs)) throw new Finding(`read of register ${id}, which the ABI does not use`);
              return regs[id]!;
            },
            writeReg: (id: number, v: bigint | number): void => {
              writes.push(id);
              regs[id] = BigInt(v);
            },
          },
          requestStop: () => void stops++,
        },
      };
      const vm = {
        serial: c.serial,
        onSerial: (t: string) => void (serialOut += t),
        stop: (e: { reason: string; code: number }) => void (stopped = e),
        cloneIndex: null,
      };
      const handled = handleHypercall(vm as unknown as Vm, vcpu as unknown as Vcpu);
      if (handled !== true) throw new Finding('a hypercall was not completed');
      if (writes.length !== 1 || writes[0] !== REG.RAX) throw new Finding(`wrote registers ${writes.join(',')}, expected only RAX`);
      if (regs[REG.RBX] !== c.rbx || regs[REG.RCX] !== c.rcx || regs[REG.RDX] !== c.rdx) throw new Finding('an argument register changed');
      const fn = Number(c.rax & 0xffff_ffffn);
      const result = regs[REG.RAX]!;
      if (result < 0n || result >= 2n ** 64n) throw new Finding(`RAX ${result} is not a 64-bit value`);
      const expect = (cond: boolean, what: string): void => {
        if (!cond) throw new Finding(`function ${fn}: ${what}`);
      };
      const byte = String.fromCharCode(Number(c.rbx & 0xffn));
      outcome(fn <= HYPERCALL.CLONE_INDEX ? `function ${fn}` : 'unknown function');
      switch (fn) {
        case HYPERCALL.VERSION:
          expect(result === BigInt(HC_VERSION) && stops === 0 && !stopped && serialOut === '' && vm.serial === c.serial, 'VERSION');
          break;
        case HYPERCALL.PUTCHAR:
          expect(result === 0n && serialOut === byte && vm.serial === c.serial + byte && !stopped, 'PUTCHAR');
          break;
        case HYPERCALL.VCPU_ID:
          expect(result === BigInt(c.vcpu) && !stopped && serialOut === '', 'VCPU_ID');
          break;
        case HYPERCALL.YIELD:
          expect(result === 0n && stops === 1 && !stopped, 'YIELD');
          break;
        case HYPERCALL.SHUTDOWN: {
          const s = stopped as { reason: string; code: number } | null;
          expect(result === 0n && s !== null && s.reason === 'debug-exit' && s.code === Number(c.rbx & 0xffn) * 2 + 1 && s.code >= 1 && s.code <= 511, 'SHUTDOWN');
          break;
        }
        case HYPERCALL.CHECKPOINT:
          expect(result === 0n && stops === 1 && !stopped && serialOut === '', 'CHECKPOINT');
          break;
        case HYPERCALL.CLONE_INDEX:
          expect(result === HC_ENOSYS && stops === 0 && !stopped && serialOut === '', 'CLONE_INDEX outside a clone');
          break;
        default:
          expect(result === HC_ENOSYS && stops === 0 && !stopped && serialOut === '' && vm.serial === c.serial, 'unknown function must be ENOSYS with no effect');
      }
    });
    return { property, close: () => {} };
});

export const FUZZ_TARGETS: readonly FuzzTarget[] = [multiboot, oci, snapshot, monitor, hypercall];
