/**
 * The monitor protocol: newline-delimited JSON over a Unix socket (see
 * docs/monitor.md). One table maps each command to its arguments and result,
 * so the server, the TUI's clients and the tests share the same types.
 */
import type { CpuView } from '../inspect/cpu-view.js';
import type { MemoryRequest, MemoryView } from '../inspect/memory-view.js';
import type { PageWalkView } from '../inspect/page-walk-view.js';
import type { DisassemblyRequest, DisassemblyView } from '../inspect/disassembly.js';
import type { TimelineView, PostCodeView } from '../inspect/timeline-view.js';
import type { EventsRequest, EventsView, EventView } from '../inspect/events-view.js';
import type { ConsolesView } from '../inspect/consoles-view.js';
import type { VcpusView } from '../inspect/vcpus-view.js';
import type { InspectionSnapshot, SnapshotRequest } from '../inspect/snapshot.js';
import type { Access } from '../cpu/x86/paging.js';
import type { BreakpointView, DebuggerStatus, StopInfo, WatchView } from './debugger.js';

export const PROTOCOL_NAME = 'firmament-monitor';
export const PROTOCOL_VERSION = 1;

export interface HelloResult {
  protocol: typeof PROTOCOL_NAME;
  version: typeof PROTOCOL_VERSION;
  machine: { label: string; cpus: number; memBytes: number };
  /** Inspectable CPUs by number: the machine's ('cpu0'...), then guest vCPUs ('vm:<name>/vcpu0'...). */
  cpus: string[];
  commands: CommandName[];
}

/** A snapshot plus the debugger status, so one round trip refreshes a whole screen. */
export interface SessionSnapshot extends InspectionSnapshot {
  status: DebuggerStatus;
}

type Empty = Record<string, never>;

/** Every command: its `args` and its `result`. */
export interface Commands {
  hello: { args: Empty; result: HelloResult };
  status: { args: Empty; result: DebuggerStatus };
  snapshot: { args: SnapshotRequest; result: SessionSnapshot };
  cpu: { args: { cpu?: number }; result: CpuView };
  memory: { args: MemoryRequest; result: MemoryView };
  translate: { args: { address: string | number; cpu?: number; access?: Access; user?: boolean }; result: PageWalkView };
  disasm: { args: DisassemblyRequest & { cpu?: number }; result: DisassemblyView };
  timeline: { args: { limit?: number }; result: TimelineView };
  events: { args: EventsRequest; result: EventsView };
  consoles: { args: { tailBytes?: number }; result: ConsolesView };
  vcpus: { args: Empty; result: VcpusView };
  pause: { args: Empty; result: DebuggerStatus };
  resume: { args: Empty; result: DebuggerStatus };
  step: { args: { cpu?: number; count?: number }; result: StopInfo };
  'run-to-mode-switch': { args: Empty; result: DebuggerStatus };
  break: { args: { spec: string }; result: BreakpointView };
  delete: { args: { id: number }; result: { deleted: boolean } };
  breakpoints: { args: Empty; result: BreakpointView[] };
  watch: { args: { spec: string }; result: WatchView };
  unwatch: { args: { id: number }; result: { deleted: boolean } };
  'serial-input': { args: { text: string }; result: { bytes: number } };
  /** Ends the machine (exit reason "stopped"); the process that owns it decides what happens next. */
  stop: { args: Empty; result: DebuggerStatus };
  /** Saves a VM (default: the first) into the snapshot store under NAME; the VM keeps running. */
  'snapshot-save': { args: { name: string; vm?: string; force?: boolean }; result: SnapshotSaved };
  /** Puts a VM (default: the first) back at snapshot NAME from the store, in place. */
  'snapshot-load': { args: { name: string; vm?: string }; result: SnapshotLoaded };
  /** Linked clones (docs/vm-state.md) in this machine: of snapshot `from` in the store, else of a running VM (default: the first) as it is now. */
  clone: { args: { vm?: string; from?: string; count: number; name?: string }; result: ClonesMade };
  // ---- backup service (vmm/backup/, docs/functions.md)
  /** An application-consistent snapshot of a VM into the store as `to`: quiesced through its agent when its profile's toolkit says so. */
  backup: { args: { to: string; vm?: string; force?: boolean }; result: BackupDone };
  /** Live-migrates a VM (default: the first) to a destination waiting with `--incoming tcp:HOST:PORT` (docs/migration.md); answers with the JSON report when the destination runs it. */
  migrate: { args: MigrateArgs; result: Record<string, unknown> };
  // Behaviour profiles and anomalies (hypervisor/security/, docs/security.md).
  /** Holds a VM (default: the first) to a behaviour profile document from now on. */
  'profile-set': { args: { vm?: string; profile: unknown }; result: ProfileSet };
  /** The profile a VM is held to, or null. */
  'profile-get': { args: { vm?: string }; result: { vm: string; profile: ProfileJson | null; learning: number } };
  /** Learns a profile over forMs of the VM's guest time (answers when it has passed); `apply` holds the VM to it at once. */
  'profile-learn': { args: { vm?: string; forMs: number; apply?: boolean }; result: { vm: string; profile: ProfileJson } };
  /** Anomalies raised so far (id > since), oldest first. */
  anomalies: { args: { since?: number; limit?: number }; result: { anomalies: AnomalyNotice[] } };
  /** Live update: a new process (PATH's Firmament, default this one) takes the VMs over in place (docs/live-update.md). */
  update: { args: { to?: string; timeoutMs?: number }; result: LiveUpdateReport };
}

export interface BackupDone {
  vm: string;
  ref: string;
  digest: string;
  toolkit: string;
  profile: string | null;
  consistency: 'application' | 'crash';
  /** Request to acknowledgement (0 for a crash-consistent backup). */
  quiesceMs: number;
  /** How long the VM was held (quiesce acknowledged to thaw). */
  heldMs: number;
  memoryBytes: number;
}

export interface MigrateArgs {
  uri: string;
  vm?: string;
  downtimeLimitMs?: number;
  /** Bytes per second; unlimited when absent. */
  bandwidth?: number;
  autoConverge?: boolean;
}

/** A behaviour profile as JSON (its schema: hypervisor/security/profile.ts). */
export type ProfileJson = Record<string, unknown>;

export interface ProfileSet {
  vm: string;
  /** Rate thresholds and sets the VM is now checked against. */
  rates: string[];
  sets: string[];
}

/** One anomaly notification (the security service's Anomaly, hypervisor/security/anomaly.ts). */
export interface AnomalyNotice {
  /** Increasing per security service. */
  id: number;
  vm: string;
  /** What deviated, by name (port-scan, msr-probe, fresh-code, com1-flood, memory-dirtying, ...). */
  behaviour: string;
  /** The profile entry that deviated: a rate metric ("serial.com1") or a set ("ioPorts"). */
  metric: string;
  description: string;
  /** Rates: events in the window; sets: the values outside the profile (hex). */
  observed: number | string[];
  /** Rates: the threshold per window; sets: how many values the profile allows. */
  expected: number | string;
  /** The sliding window of guest time the observation covers (virtual ms of the VM's clock). */
  window: { fromMs: number; toMs: number };
  severity: 'low' | 'medium' | 'high';
  /** Guest RIP of the first out-of-profile access (sets), or of the vCPU whose slice crossed the threshold (rates). */
  rip: string;
  /** When it was raised, in the VM's virtual ms; the episode goes on until `quietMs` without deviation. */
  atMs: number;
  episode: { lastMs: number; events: number };
}

export interface VmBlackout {
  vm: string;
  /** Last guest instruction in the old process (the pause) to the VM's first instruction in the new one. */
  blackoutMs: number;
  /** Old side: pause to commit ('go' sent). */
  oldSideMs: number;
  /** New side: 'go' received to this VM's first slice. */
  newSideMs: number;
}

/** What `update` answers: the takeover and its blackout, or the rollback and why. */
export type LiveUpdateReport =
  | {
      ok: true;
      from: { pid: number; path: string };
      to: { pid: number; path: string; hcVersion: number; liveUpdateVersion: number };
      /** The successor's start to 'ready' (code loaded, engines built, RAM mapped), guests running meanwhile. */
      prepareMs: number;
      /** Pause to the successor's 'adopted'. */
      adoptMs: number;
      /** Inside that: the old process recording and encoding the state, the successor decoding and adopting it. */
      phases: { saveMs: number; successorAdoptMs: number; saveCpuMs?: number; successorAdoptCpuMs?: number };
      /** 'in place' (the rehearsal's VMs took the record) or 'from scratch (why)'. */
      successorAdopted?: string;
      blackout: VmBlackout[];
      stateBytes: number;
      shm: { inode: number; successorInode: number };
      /** The successor's private memory before and after adopting (a copy of guest RAM would show here). */
      rssAnonKiB: { beforeAdopt: number; afterAdopt: number };
      guestRamBytes: number;
    }
  | { ok: false; rolledBack: true; reason: string; phase: 'spawn' | 'prepare' | 'takeover'; pausedMs: number };

export interface SnapshotSaved {
  vm: string;
  ref: string;
  digest: string;
  /** Guest memory in the snapshot, and what this save added to the store (shared chunks are stored once). */
  memoryBytes: number;
  bytesWritten: number;
  /** The VM's own virtual time in the snapshot. */
  clockNs: number;
}

export interface ClonesMade {
  /** The running VM or the snapshot the clones start from. */
  source: string;
  /** Guest RAM of the image the clones share (copied once). */
  imageBytes: number;
  clones: { name: string; index: number; createMs: number }[];
  /** Host frames free after the clones were made. */
  hostFramesFree: number;
}

export interface SnapshotLoaded {
  vm: string;
  ref: string;
  clockNs: number;
  /** How memory was brought back: only the differing chunks (from the dirty log, or by hashing), or all of it. */
  method: 'dirty-log' | 'hash' | 'full';
  /** Guest memory written, against a full restore. */
  bytesMoved: number;
  fullBytes: number;
}

/** Commands served only by machines that have VMs and a snapshot store; they answer asynchronously. */
export const ASYNC_COMMANDS = ['snapshot-save', 'snapshot-load', 'clone', 'backup', 'migrate', 'profile-learn', 'update'] as const satisfies readonly CommandName[];

export type CommandName = keyof Commands;
export const COMMAND_NAMES: readonly CommandName[] = [
  'hello', 'status', 'snapshot', 'cpu', 'memory', 'translate', 'disasm', 'timeline', 'events', 'consoles', 'vcpus',
  'pause', 'resume', 'step', 'run-to-mode-switch', 'break', 'delete', 'breakpoints', 'watch', 'unwatch', 'serial-input', 'stop',
  'snapshot-save', 'snapshot-load', 'clone',
  'backup',
  'migrate',
  'profile-set', 'profile-get', 'profile-learn', 'anomalies',
  'update',
];

export interface MonitorRequest<K extends CommandName = CommandName> {
  /** Echoed in the response; lets a client have several requests in flight. */
  id?: number | string;
  cmd: K;
  args?: Commands[K]['args'];
}

export type MonitorResponse<K extends CommandName = CommandName> =
  | { id?: number | string; ok: true; result: Commands[K]['result'] }
  | { id?: number | string; ok: false; error: string };

/** Pushed to every client, unprompted, as `{"event": ..., "data": ...}`. */
export interface MonitorEvents {
  /** The machine stopped: breakpoint, POST code, watch, mode switch, step, pause, exit. */
  stop: StopInfo;
  resumed: { atMs: number };
  post: PostCodeView;
  /** Console output since the last console event (batched, about 20 per second at most). */
  console: { id: string; text: string };
  /** Machine events since the last batch (debugcon bytes excluded; see `console`). */
  'machine-events': { events: EventView[]; dropped: number };
  /** A running migration's progress (after each round, at the switch-over, at the end). */
  migration: Record<string, unknown>;
  /** The security service raised an anomaly (one per episode). */
  anomaly: AnomalyNotice;
}

export type MonitorEventName = keyof MonitorEvents;

export type MonitorEvent = { [K in MonitorEventName]: { event: K; data: MonitorEvents[K] } }[MonitorEventName];
