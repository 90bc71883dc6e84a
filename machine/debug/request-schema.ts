/**
 * Validation of monitor requests (docs/monitor.md) with zod: every request
 * from a socket client is checked against its command's schema before the
 * session runs it, so `null`, `{"cmd":"constructor"}`, a width of 0 or a
 * step count of 10^12 get a clear error instead of a crash or a wedged machine.
 * The schemas mirror `Commands` in protocol.ts; a compile-time check below
 * keeps each schema's output assignable to the command's argument type.
 */
import { z } from 'zod';
import { SNAPSHOT_PARTS } from '../inspect/snapshot.js';
import { COMMAND_NAMES, type CommandName, type Commands, type MonitorRequest } from './protocol.js';

/** Most instructions one `step` may run: it runs synchronously, so it must end promptly. */
export const MAX_STEP_COUNT = 100_000;
/** Bounds on text fields: specs and addresses are short; serial input is a typed line or a paste. */
const MAX_SPEC_CHARS = 256;
const MAX_SERIAL_INPUT_CHARS = 64 * 1024;
/** Linked clones per `clone` request (the function service's pool makes its own). */
export const MAX_CLONES_PER_REQUEST = 64;

const cpu = z.number().int().min(0).max(1 << 16);
const address = z.union([z.string().max(MAX_SPEC_CHARS), z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER)]);
const count = (max: number) => z.number().int().min(0).max(max);
const access = z.enum(['read', 'write', 'fetch']);
const empty = z.strictObject({});

const memory = z.strictObject({ space: z.enum(['physical', 'virtual']), address, length: count(1 << 30), width: z.number().int().min(1).max(64).optional() });
const disasm = z.strictObject({ address: address.optional(), count: count(4096).optional(), before: count(256).optional(), bits: z.union([z.literal(16), z.literal(32), z.literal(64)]).optional() });
const events = z.strictObject({ limit: count(1 << 20).optional(), kinds: z.array(z.string().max(64)).max(256).optional(), includeConsoleBytes: z.boolean().optional() });
const limitOnly = z.strictObject({ limit: count(1 << 20).optional() });
const tail = z.strictObject({ tailBytes: count(1 << 30).optional() });
const pageWalk = z.strictObject({ address, access: access.optional(), user: z.boolean().optional() });

const ARGS = {
  hello: empty,
  status: empty,
  snapshot: z.strictObject({
    cpu: cpu.optional(),
    parts: z.array(z.enum(SNAPSHOT_PARTS)).max(SNAPSHOT_PARTS.length * 2).optional(),
    memory: memory.optional(),
    disassembly: disasm.optional(),
    pageWalk: pageWalk.nullable().optional(),
    events: events.optional(),
    consoles: tail.optional(),
    timeline: limitOnly.optional(),
  }),
  cpu: z.strictObject({ cpu: cpu.optional() }),
  memory: memory.extend({ cpu: cpu.optional() }),
  translate: z.strictObject({ address, cpu: cpu.optional(), access: access.optional(), user: z.boolean().optional() }),
  disasm: disasm.extend({ cpu: cpu.optional() }),
  timeline: limitOnly,
  events,
  consoles: tail,
  vcpus: empty,
  pause: empty,
  resume: empty,
  step: z.strictObject({ cpu: cpu.optional(), count: z.number().int().min(1).max(MAX_STEP_COUNT).optional() }),
  'run-to-mode-switch': empty,
  break: z.strictObject({ spec: z.string().min(1).max(MAX_SPEC_CHARS) }),
  delete: z.strictObject({ id: z.number().int().nonnegative() }),
  breakpoints: empty,
  watch: z.strictObject({ spec: z.string().min(1).max(MAX_SPEC_CHARS) }),
  unwatch: z.strictObject({ id: z.number().int().nonnegative() }),
  'serial-input': z.strictObject({ text: z.string().max(MAX_SERIAL_INPUT_CHARS) }),
  stop: empty,
  'snapshot-save': z.strictObject({ name: z.string().min(1).max(MAX_SPEC_CHARS), vm: z.string().min(1).max(MAX_SPEC_CHARS).optional(), force: z.boolean().optional() }),
  'snapshot-load': z.strictObject({ name: z.string().min(1).max(MAX_SPEC_CHARS), vm: z.string().min(1).max(MAX_SPEC_CHARS).optional() }),
  clone: z.strictObject({ vm: z.string().min(1).max(MAX_SPEC_CHARS).optional(), from: z.string().min(1).max(MAX_SPEC_CHARS).optional(), count: z.number().int().min(1).max(MAX_CLONES_PER_REQUEST), name: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, 'letters, digits, dot, dash, underscore (at most 64)').optional() }),
  // backup service
  backup: z.strictObject({ to: z.string().min(1).max(MAX_SPEC_CHARS), vm: z.string().min(1).max(MAX_SPEC_CHARS).optional(), force: z.boolean().optional() }),
  migrate: z.strictObject({ uri: z.string().min(1).max(MAX_SPEC_CHARS), vm: z.string().min(1).max(MAX_SPEC_CHARS).optional(), downtimeLimitMs: z.number().positive().max(3_600_000).optional(), bandwidth: z.number().positive().max(2 ** 40).optional(), autoConverge: z.boolean().optional() }),
  // Behaviour profiles: the profile document itself is checked by its own schema (hypervisor/security/profile.ts).
  'profile-set': z.strictObject({ vm: z.string().min(1).max(MAX_SPEC_CHARS).optional(), profile: z.unknown() }),
  'profile-get': z.strictObject({ vm: z.string().min(1).max(MAX_SPEC_CHARS).optional() }),
  'profile-learn': z.strictObject({ vm: z.string().min(1).max(MAX_SPEC_CHARS).optional(), forMs: z.number().int().min(1).max(3_600_000), apply: z.boolean().optional() }),
  anomalies: z.strictObject({ since: count(Number.MAX_SAFE_INTEGER).optional(), limit: count(1 << 20).optional() }),
  update: z.strictObject({ to: z.string().min(1).max(4096).optional(), timeoutMs: z.number().int().min(1).max(3_600_000).optional() }),
} satisfies { [K in CommandName]: z.ZodType<Commands[K]['args']> };

const REQUEST = z.strictObject({
  id: z.union([z.number().finite(), z.string().max(MAX_SPEC_CHARS)]).optional(),
  cmd: z.string().max(64),
  args: z.unknown().optional(),
});

export type RequestCheck = { ok: true; request: MonitorRequest } | { ok: false; id?: number | string; error: string };

const isCommand = (name: string): name is CommandName => (COMMAND_NAMES as readonly string[]).includes(name);

/** "args.memory.width: Too small: expected number to be >=1" */
function describe(prefix: string, err: z.ZodError): string {
  return err.issues
    .slice(0, 3)
    .map((i) => `${[prefix, ...i.path.map(String)].filter(Boolean).join('.') || 'request'}: ${i.message}`)
    .join('; ');
}

/**
 * safeParse that never throws: zod's length checks also run on a value of the wrong
 * type that has a `length` property, and comparing an exotic one (an object without a
 * prototype, found by the fuzzer) throws a TypeError from inside the validator.
 */
function safely<T>(schema: z.ZodType<T>, value: unknown): z.ZodSafeParseResult<T> | { success: false; thrown: string } {
  try {
    return schema.safeParse(value);
  } catch (e) {
    return { success: false, thrown: (e as Error).message };
  }
}

/** Checks one decoded JSON value as a request; the id is kept for the error response when it is valid. */
export function checkRequest(value: unknown): RequestCheck {
  const envelope = safely(REQUEST, value);
  if (!envelope.success) {
    const rawId = value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as { id?: unknown }).id : undefined;
    const id = typeof rawId === 'number' && Number.isFinite(rawId) ? rawId : typeof rawId === 'string' && rawId.length <= MAX_SPEC_CHARS ? rawId : undefined;
    const why = 'thrown' in envelope ? `not a valid request (${envelope.thrown})` : describe('', envelope.error);
    return { ok: false, ...(id !== undefined ? { id } : {}), error: `${why} (a request is {"id": <n>, "cmd": "<command>", "args": {...}})` };
  }
  const { id, cmd, args } = envelope.data;
  const withId = id !== undefined ? { id } : {};
  // An own-property lookup on a fixed list: "constructor" or "__proto__" are unknown commands, not Object's.
  if (!isCommand(cmd)) return { ok: false, ...withId, error: `unknown command '${cmd}' (commands: ${COMMAND_NAMES.join(', ')})` };
  const parsed = safely<unknown>(ARGS[cmd], args ?? {});
  if (!parsed.success) return { ok: false, ...withId, error: `${cmd}: ${'thrown' in parsed ? `invalid args (${parsed.thrown})` : describe('args', parsed.error)}` };
  return { ok: true, request: { ...withId, cmd, args: parsed.data } as MonitorRequest };
}
