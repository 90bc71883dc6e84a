/**
 * A debug session: the monitor protocol's commands executed against one
 * machine and its Debugger, and the event stream. The Unix-socket server
 * and the in-process TUI both go through this one handler, so what the
 * TUI can do, a monitor client can do.
 */
import type { PcMachine } from '../platform/pc.js';
import { cpuView } from '../inspect/cpu-view.js';
import { pageWalkView } from '../inspect/page-walk-view.js';
import { disassemble } from '../inspect/disassembly.js';
import { postCodeView, timelineView } from '../inspect/timeline-view.js';
import { eventsView, eventView, isShownEvent, type EventView } from '../inspect/events-view.js';
import { consolesView } from '../inspect/consoles-view.js';
import { vcpusView } from '../inspect/vcpus-view.js';
import { inspectableCpu, inspectableCpus, inspectMachine, readMemoryFor, type InspectHooks } from '../inspect/snapshot.js';
import { nsToMs, parseAddress } from '../inspect/hex.js';
import { Debugger } from './debugger.js';
import { chainListener } from './listeners.js';
import { parseBreakpointSpec, parseWatchSpec } from './specs.js';
import { checkRequest } from './request-schema.js';
import { ASYNC_COMMANDS, COMMAND_NAMES, PROTOCOL_NAME, PROTOCOL_VERSION, type CommandName, type Commands, type MigrateArgs, type MonitorEvent, type MonitorEvents, type MonitorRequest, type MonitorResponse } from './protocol.js';

export interface SessionOptions {
  /** What runs on the machine, for `hello` (e.g. "firmware boot", "guest hello.elf"). */
  label?: string;
  hooks?: InspectHooks;
  /** Reuse a debugger that already exists for this machine. */
  debugger?: Debugger;
  /** The VM snapshot commands, from the layer that owns the hypervisor and the store. */
  snapshots?: SnapshotCommands;
  /** Linked clones into this machine (`clone`), from the layer that owns the hypervisor and the store. */
  clones?: (args: Commands['clone']['args']) => Promise<Commands['clone']['result']>;
  /** The backup service's command (vmm/backup/), from the same layer. */
  backup?: (args: Commands['backup']['args']) => Promise<Commands['backup']['result']>;
  /** Live migration of a VM, from the layer that owns the hypervisor (progress goes out as `migration` events). */
  migrate?: (args: MigrateArgs, progress: (p: Record<string, unknown>) => void) => Promise<Record<string, unknown>>;
  /** Behaviour profiles and anomalies, from the layer that owns the security service. */
  security?: SecurityCommands;
  /** Live update (`update`), from the layer that owns the hypervisor and its shared RAM. */
  update?: (args: Commands['update']['args']) => Promise<Commands['update']['result']>;
}

export interface SecurityCommands {
  set(args: Commands['profile-set']['args']): Commands['profile-set']['result'];
  get(args: Commands['profile-get']['args']): Commands['profile-get']['result'];
  learn(args: Commands['profile-learn']['args']): Promise<Commands['profile-learn']['result']>;
  anomalies(args: Commands['anomalies']['args']): Commands['anomalies']['result'];
  onAnomaly(listener: (a: MonitorEvents['anomaly']) => void): () => void;
}

export interface SnapshotCommands {
  save(args: Commands['snapshot-save']['args']): Promise<Commands['snapshot-save']['result']>;
  load(args: Commands['snapshot-load']['args']): Promise<Commands['snapshot-load']['result']>;
}

export type EventListener = (ev: MonitorEvent) => void;

/** Console output and machine events are batched: a chatty guest must not flood clients. */
const BATCH_MS = 50;
const MAX_EVENTS_PER_BATCH = 200;
/** Host bytes that may wait for the guest to read COM1 (serial-input beyond this is refused). */
export const MAX_PENDING_SERIAL_INPUT = 256 * 1024;
export const MAX_BREAKPOINTS = 256;
export const MAX_WATCHES = 64;

type AsyncCommand = (typeof ASYNC_COMMANDS)[number];
type Handlers = { [K in Exclude<CommandName, AsyncCommand>]: (args: Commands[K]['args']) => Commands[K]['result'] };

export class DebugSession {
  readonly debugger: Debugger;
  private readonly listeners = new Set<EventListener>();
  private readonly detachers: (() => void)[] = [];
  private readonly consoleBuffers = new Map<string, string>();
  private eventBuffer: EventView[] = [];
  private droppedEvents = 0;
  private batchTimer: NodeJS.Timeout | null = null;
  private readonly handlers: Handlers;

  constructor(
    readonly machine: PcMachine,
    private readonly opts: SessionOptions = {},
  ) {
    this.debugger = opts.debugger ?? new Debugger(machine, { cpus: () => inspectableCpus(machine, opts.hooks).map((e) => e.cpu) });
    this.detachers.push(this.debugger.onStop((stop) => this.emit({ event: 'stop', data: stop })));
    this.detachers.push(chainListener(machine, 'onPostCode', (code, atNs) => this.emit({ event: 'post', data: postCodeView(code, atNs) })));
    this.detachers.push(chainListener(machine, 'onSerial', (text) => this.bufferConsole('com1', text)));
    this.detachers.push(
      chainListener(machine, 'onEvent', (ev) => {
        if (ev.kind === 'debugcon') this.bufferConsole('debugcon', ev.detail);
        else if (isShownEvent(ev)) this.bufferEvent(eventView(ev));
      }),
    );
    if (opts.security) this.detachers.push(opts.security.onAnomaly((a) => this.emit({ event: 'anomaly', data: a })));
    this.handlers = this.makeHandlers();
  }

  onEvent(listener: EventListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * Executes one request, any decoded JSON value (a socket client sends anything);
   * never throws: a request that fails its schema (request-schema.ts) or its command
   * comes back as `ok: false`.
   */
  handle(raw: unknown): MonitorResponse {
    const checked = checkRequest(raw);
    if (!checked.ok) return { ...(checked.id !== undefined ? { id: checked.id } : {}), ok: false, error: checked.error };
    const req = checked.request;
    const id = req.id;
    try {
      if ((ASYNC_COMMANDS as readonly string[]).includes(req.cmd)) throw new Error(`'${req.cmd}' answers asynchronously (handleAsync; over the socket it just works)`);
      const handler = this.handlers[req.cmd as keyof Handlers] as (args: unknown) => unknown;
      const result = handler(req.args ?? {});
      return { ...(id !== undefined ? { id } : {}), ok: true, result } as MonitorResponse;
    } catch (e) {
      return { ...(id !== undefined ? { id } : {}), ok: false, error: (e as Error).message };
    }
  }

  /** Executes one request, including the asynchronous ones (snapshot save and load); never rejects. */
  async handleAsync(raw: unknown): Promise<MonitorResponse> {
    const checked = checkRequest(raw);
    if (checked.ok && checked.request.cmd === 'backup') {
      const id = checked.request.id;
      try {
        if (!this.opts.backup) throw new Error(`'backup' needs a machine running VMs under the hypervisor (firmament run, or boot with --guest)`);
        const result = await this.opts.backup(checked.request.args as Commands['backup']['args']);
        return { ...(id !== undefined ? { id } : {}), ok: true, result } as MonitorResponse;
      } catch (e) {
        return { ...(id !== undefined ? { id } : {}), ok: false, error: (e as Error).message };
      }
    }
    if (checked.ok && checked.request.cmd === 'update') return this.handleUpdate(checked.request as MonitorRequest<'update'>);
    if (checked.ok && checked.request.cmd === 'profile-learn') return this.profileLearn(checked.request as MonitorRequest<'profile-learn'>);
    if (!checked.ok || !(ASYNC_COMMANDS as readonly string[]).includes(checked.request.cmd)) return this.handle(raw);
    const req = checked.request;
    const id = req.id;
    try {
      const s = this.opts.snapshots;
      if (req.cmd === 'clone') {
        if (!this.opts.clones) throw new Error(`'clone' needs a machine running VMs under the hypervisor (firmament run)`);
        const result = await this.opts.clones(req.args as Commands['clone']['args']);
        return { ...(id !== undefined ? { id } : {}), ok: true, result } as MonitorResponse;
      }
      if (req.cmd === 'migrate') {
        if (!this.opts.migrate) throw new Error(`'migrate' needs a machine running VMs under the hypervisor (firmament run, or boot with --guest)`);
        const result = await this.opts.migrate(req.args as MigrateArgs, (p) => this.emit({ event: 'migration', data: p }));
        return { ...(id !== undefined ? { id } : {}), ok: true, result } as MonitorResponse;
      }
      if (!s) throw new Error(`'${req.cmd}' needs a machine running VMs under the hypervisor (firmament run, or boot with --guest)`);
      const args = req.args as { name: string; vm?: string; force?: boolean };
      const common = { name: args.name, ...(args.vm !== undefined ? { vm: args.vm } : {}) };
      const result = req.cmd === 'snapshot-save' ? await s.save({ ...common, ...(args.force ? { force: true } : {}) }) : await s.load(common);
      return { ...(id !== undefined ? { id } : {}), ok: true, result } as MonitorResponse;
    } catch (e) {
      return { ...(id !== undefined ? { id } : {}), ok: false, error: (e as Error).message };
    }
  }

  private async profileLearn(req: MonitorRequest<'profile-learn'>): Promise<MonitorResponse> {
    const id = req.id;
    try {
      const result = await this.securityCommands().learn(req.args!);
      return { ...(id !== undefined ? { id } : {}), ok: true, result };
    } catch (e) {
      return { ...(id !== undefined ? { id } : {}), ok: false, error: (e as Error).message };
    }
  }

  private async handleUpdate(req: MonitorRequest<'update'>): Promise<MonitorResponse> {
    const id = req.id;
    try {
      if (!this.opts.update) throw new Error("'update' needs a machine running VMs with its RAM in a shared-memory file (firmament run --shared-ram)");
      const result = await this.opts.update(req.args ?? {});
      return { ...(id !== undefined ? { id } : {}), ok: true, result } as MonitorResponse;
    } catch (e) {
      return { ...(id !== undefined ? { id } : {}), ok: false, error: (e as Error).message };
    }
  }

  private securityCommands(): SecurityCommands {
    if (!this.opts.security) throw new Error(`behaviour profiles need a machine running VMs under the hypervisor (firmament run, or boot with --guest)`);
    return this.opts.security;
  }

  /** Typed in-process call (throws on error). */
  call<K extends CommandName>(cmd: K, args: Commands[K]['args']): Commands[K]['result'] {
    const r = this.handle({ cmd, args } as MonitorRequest);
    if (!r.ok) throw new Error(r.error);
    return r.result as Commands[K]['result'];
  }

  close(): void {
    this.flushBatches();
    if (this.batchTimer) clearTimeout(this.batchTimer);
    for (const d of this.detachers.splice(0)) d();
    if (!this.opts.debugger) this.debugger.detach();
    this.listeners.clear();
  }

  private makeHandlers(): Handlers {
    const m = this.machine;
    const d = this.debugger;
    const hooks = this.opts.hooks ?? {};
    const cpuOf = (i: number | undefined): number => i ?? 0;
    return {
      hello: () => ({ protocol: PROTOCOL_NAME, version: PROTOCOL_VERSION, machine: { label: this.opts.label ?? 'machine', cpus: m.cpus.length, memBytes: m.memory.ramSize }, cpus: inspectableCpus(m, hooks).map((e) => e.id), commands: [...COMMAND_NAMES] }),
      status: () => d.status(),
      snapshot: (args) => ({ ...inspectMachine(m, args, hooks), status: d.status() }),
      cpu: (args) => cpuView(inspectableCpu(m, cpuOf(args.cpu), hooks)),
      memory: (args) => readMemoryFor(m, args, hooks),
      translate: (args) => pageWalkView(inspectableCpu(m, cpuOf(args.cpu), hooks), parseAddress(args.address), { ...(args.access ? { access: args.access } : {}), ...(args.user !== undefined ? { user: args.user } : {}) }),
      disasm: (args) => disassemble(inspectableCpu(m, cpuOf(args.cpu), hooks), args),
      timeline: (args) => timelineView(m, { ...(args.limit !== undefined ? { limit: args.limit } : {}), hooks }),
      events: (args) => eventsView(m, args),
      consoles: (args) => consolesView(m, { ...(args.tailBytes !== undefined ? { tailBytes: args.tailBytes } : {}), hooks }),
      vcpus: () => vcpusView(m, hooks),
      pause: () => {
        d.pause();
        return d.status();
      },
      resume: () => {
        d.resume();
        this.emit({ event: 'resumed', data: { atMs: nsToMs(m.now()) } });
        return d.status();
      },
      step: (args) => d.step(cpuOf(args.cpu), args.count ?? 1),
      'run-to-mode-switch': () => {
        d.runToModeSwitch();
        this.emit({ event: 'resumed', data: { atMs: nsToMs(m.now()) } });
        return d.status();
      },
      break: (args) => {
        // Each breakpoint hooks every CPU's engine: a client must not exhaust the engines' hook slots.
        if (d.listBreakpoints().length >= MAX_BREAKPOINTS) throw new Error(`at most ${MAX_BREAKPOINTS} breakpoints (delete some first)`);
        return d.addBreakpoint(parseBreakpointSpec(String(args.spec ?? '')));
      },
      delete: (args) => ({ deleted: d.removeBreakpoint(Number(args.id)) }),
      breakpoints: () => d.listBreakpoints(),
      watch: (args) => {
        // Each watch keeps a copy of its range (up to 1 MiB) and is compared after every round.
        if (d.status().watches.length >= MAX_WATCHES) throw new Error(`at most ${MAX_WATCHES} watches (unwatch some first)`);
        return d.addWatch(parseWatchSpec(String(args.spec ?? '')));
      },
      unwatch: (args) => ({ deleted: d.removeWatch(Number(args.id)) }),
      'serial-input': (args) => {
        const bytes = new TextEncoder().encode(String(args.text ?? ''));
        // The guest reads at its own pace: a client that types faster waits, it does not grow the queue without end.
        const pending = m.uart.pendingInput();
        if (pending + bytes.length > MAX_PENDING_SERIAL_INPUT) throw new Error(`COM1 input queue full: ${pending} bytes still wait for the guest to read them (at most ${MAX_PENDING_SERIAL_INPUT})`);
        m.serialInput(bytes);
        return { bytes: bytes.length };
      },
      stop: () => {
        m.stop('stopped by the monitor');
        if (m.paused) m.resume();
        return d.status();
      },
      // Behaviour profiles and anomalies (profile-learn answers asynchronously: handleAsync).
      'profile-set': (args) => this.securityCommands().set(args),
      'profile-get': (args) => this.securityCommands().get(args),
      anomalies: (args) => this.securityCommands().anomalies(args),
    };
  }

  private emit(ev: MonitorEvent): void {
    // Console text written before this event belongs before it in the stream.
    if (ev.event === 'stop' || ev.event === 'post') this.flushBatches();
    for (const l of this.listeners) l(ev);
  }

  private bufferConsole(id: string, text: string): void {
    this.consoleBuffers.set(id, (this.consoleBuffers.get(id) ?? '') + text);
    this.scheduleBatch();
  }

  private bufferEvent(ev: EventView): void {
    this.eventBuffer.push(ev);
    if (this.eventBuffer.length > MAX_EVENTS_PER_BATCH) {
      this.eventBuffer.shift();
      this.droppedEvents++;
    }
    this.scheduleBatch();
  }

  private scheduleBatch(): void {
    if (this.batchTimer || this.listeners.size === 0) {
      if (this.listeners.size === 0) this.clearBatches();
      return;
    }
    this.batchTimer = setTimeout(() => {
      this.batchTimer = null;
      this.flushBatches();
    }, BATCH_MS);
    this.batchTimer.unref();
  }

  private clearBatches(): void {
    this.consoleBuffers.clear();
    this.eventBuffer = [];
    this.droppedEvents = 0;
  }

  private flushBatches(): void {
    if (this.batchTimer) {
      clearTimeout(this.batchTimer);
      this.batchTimer = null;
    }
    const consoles = [...this.consoleBuffers];
    const events = this.eventBuffer;
    const dropped = this.droppedEvents;
    this.clearBatches();
    for (const [id, text] of consoles) for (const l of this.listeners) l({ event: 'console', data: { id, text } });
    if (events.length > 0) for (const l of this.listeners) l({ event: 'machine-events', data: { events, dropped } });
  }
}
