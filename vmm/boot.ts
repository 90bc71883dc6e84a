/**
 * The whole boot path: reset vector, firmware POST, the lightweight OS running
 * the firmware containers, the handoff, and the hypervisor running guests.
 * POST codes and the handoff mark the stages; the report is what the CLI
 * prints as JSON or text.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PcMachine, type MachineExit, type PcConfig } from '../machine/platform/pc.js';
import { describePostCode, hex2, type PostSeverity } from '../machine/platform/post-codes.js';
import { parseBootInfo, BOOT_INFO_DEFAULT_ADDRESS, type BootInfo } from '../machine/platform/boot-info.js';
import { parseHandoff, type Handoff, type HandoffContainer, type HandoffEvent } from '../machine/platform/handoff.js';
import { containerFwCfgFiles, localLayoutFiles, DEFAULT_LAYOUT, type ContainerSource, type FwCfgFile } from '../machine/platform/container-source.js';
import { PROJECT_ROOT } from '../machine/cpu/unicorn/locate.js';
import type { FaultSpec } from '../machine/platform/faults.js';
import type { Hypervisor } from '../hypervisor/hypervisor.js';
import { hypervisorWithGuests, installHypervisor, mergeGuestReports, type GuestFileSpec, type GuestLoadFailure } from '../hypervisor/guest-files.js';
import type { GuestReport } from '../hypervisor/hypervisor.js';

export const NEXT_STAGE_FILE = 'opt/firmament/next-stage';
export const DEFAULT_ROM = join(PROJECT_ROOT, 'images/build/firmware.rom');
/** The lightweight OS: the firmware's default next stage. */
export const DEFAULT_NEXT_STAGE = join(PROJECT_ROOT, 'images/build/os.elf');
/** The small test payload (firmware tests without the OS). */
export const TEST_PAYLOAD = join(PROJECT_ROOT, 'images/build/payload.elf');

const MiB = 1024 * 1024;

export type BootGuest = GuestFileSpec;

export interface BootOptions {
  memBytes: number;
  cpus: number;
  faults: FaultSpec[];
  timeoutMs?: number;
  seed?: number;
  pace?: PcConfig['pace'];
  timerSlackMs?: number | undefined;
  /** `--rtc`: RTC time (Unix seconds, UTC) at virtual time 0, for the machine and its VMs; default a fixed date. */
  rtcEpochSeconds?: number | undefined;
  romPath?: string;
  nextStagePath?: string;
  /** Where the OS pulls its firmware containers from (default: the local OCI layout). */
  containers?: ContainerSource;
  /** Guests for the hypervisor after the handoff. */
  guests?: BootGuest[];
  /** After the handoff the hypervisor waits for VMs to arrive (boot --incoming): having none does not end the machine. */
  waitForVms?: boolean;
}

export interface PostCodeRecord {
  code: number;
  hex: string;
  name: string;
  severity: PostSeverity;
  atMs: number;
}

export interface StageRecord {
  name: string;
  startMs: number;
  endMs: number | null;
}

export interface MemoryMapEntry {
  base: string;
  length: string;
  type: number;
  typeName: string;
}

export interface BootReport {
  machine: { memBytes: number; cpus: number; faults: string[]; containerSource: string };
  postCodes: PostCodeRecord[];
  postErrors: PostCodeRecord[];
  serial: string;
  debugcon: string;
  stages: StageRecord[];
  /** The firmware's memory map, as handed to the next stage. */
  memoryMap: MemoryMapEntry[];
  bootInfo: BootInfo | null;
  containers: HandoffContainer[];
  eventLog: { pcr: string; events: HandoffEvent[] } | null;
  handoff: { address: string; result: 'pass' | 'fail'; memoryMap: MemoryMapEntry[]; counts: Handoff['counts'] } | null;
  guests: GuestReport[];
  exit: { reason: MachineExit['reason']; code: number; detail?: string };
  wallMs: number;
  virtualMs: number;
}

/** Stage boundaries keyed by the POST code that starts each stage; the handoff starts 'hypervisor'. */
const STAGE_STARTS: [number, string][] = [
  [0x01, 'real-mode'],
  [0x02, 'protected-mode'],
  [0x03, 'long-mode-init'],
  [0x04, 'post'],
  [0x5f, 'containers'],
];

const E820_NAMES: Record<number, string> = { 1: 'usable', 2: 'reserved', 3: 'acpi', 4: 'nvs', 5: 'bad', 0x1000: 'os' };
const ms = (ns: number): number => Math.round(ns / 1000) / 1000;
const mapEntry = (base: number, length: number, type: number): MemoryMapEntry => ({ base: `0x${base.toString(16)}`, length: `0x${length.toString(16)}`, type, typeName: E820_NAMES[type] ?? `type ${type}` });

export interface BootListeners {
  onSerial?: (text: string) => void;
  onPostCode?: (rec: PostCodeRecord) => void;
  onMachine?: (m: PcMachine) => void;
  onHandoff?: (h: Handoff, hv: Hypervisor | null) => void;
  onGuestSerial?: (guest: string, text: string) => void;
  /** The machine stopped and its report is complete; its engines are still open (e.g. to save its state). */
  /** `hv`: the hypervisor when the firmware handed off (its VMs are still there to save). */
  onExit?: (m: PcMachine, report: BootReport, hv: Hypervisor | null) => void;
}

/** Host RAM a boot with guests needs: the OS and hypervisor's own share plus guest RAM. */
export function machineMemoryFor(guests: readonly BootGuest[], requested?: number): number {
  if (requested !== undefined) return requested;
  return guests.length === 0 ? 64 * MiB : 64 * MiB + guests.reduce((n, g) => n + g.memBytes, 0);
}

/**
 * Builds the machine with the firmware ROM and, in fw_cfg, the next stage and
 * the container files (`containerFiles`, already pulled; default: the local layout).
 */
export function createBootMachine(opts: BootOptions, containerFiles?: readonly FwCfgFile[]): PcMachine {
  const rom = new Uint8Array(readFileSync(opts.romPath ?? DEFAULT_ROM));
  const nextPath = opts.nextStagePath ?? DEFAULT_NEXT_STAGE;
  const next = new Uint8Array(readFileSync(nextPath));
  const files: FwCfgFile[] = [{ name: NEXT_STAGE_FILE, data: next }];
  // Only the OS reads containers; the test payload does not.
  if (nextPath !== TEST_PAYLOAD) files.push(...(containerFiles ?? localLayoutFiles(DEFAULT_LAYOUT)));
  return new PcMachine({ memBytes: opts.memBytes, cpus: opts.cpus, rom, faults: opts.faults, seed: opts.seed ?? 0, pace: opts.pace ?? 'realtime', ...(opts.timerSlackMs !== undefined ? { timerSlackMs: opts.timerSlackMs } : {}), ...(opts.rtcEpochSeconds !== undefined ? { rtcEpochSeconds: opts.rtcEpochSeconds } : {}), fwCfgFiles: files });
}

export async function boot(opts: BootOptions, listeners: BootListeners = {}): Promise<BootReport> {
  // --timeout covers the whole command: a registry pull spends from the same budget as the run.
  const pullStart = performance.now();
  const files = opts.containers ? await containerFwCfgFiles(opts.containers, opts.timeoutMs) : undefined;
  const runTimeoutMs = opts.timeoutMs !== undefined ? Math.max(1, opts.timeoutMs - (performance.now() - pullStart)) : undefined;
  const m = createBootMachine(opts, files);
  listeners.onMachine?.(m);
  const postCodes: PostCodeRecord[] = [];
  const stages: StageRecord[] = [{ name: 'reset', startMs: 0, endMs: null }];
  const startStage = (name: string, atMs: number): void => {
    if (stages[stages.length - 1]!.name === name) return;
    stages[stages.length - 1]!.endMs = atMs;
    stages.push({ name, startMs: atMs, endMs: null });
  };
  let bootInfo: BootInfo | null = null;
  let handoff: Handoff | null = null;
  let hv: Hypervisor | null = null;
  const guestFailures: GuestLoadFailure[] = [];
  m.onSerial = (t) => listeners.onSerial?.(t);
  m.onPostCode = (code, atNs) => {
    const info = describePostCode(code);
    const rec: PostCodeRecord = { code, hex: hex2(code), name: info.name, severity: info.severity, atMs: ms(atNs) };
    postCodes.push(rec);
    const stage = STAGE_STARTS.find(([c]) => c === code);
    if (stage) startStage(stage[1], rec.atMs);
    listeners.onPostCode?.(rec);
  };
  m.onHandoff = (address) => {
    startStage('hypervisor', ms(m.now()));
    try {
      handoff = parseHandoff((a, n) => m.memory.read(a, n), address);
    } catch (e) {
      m.finish({ reason: 'error', code: 2, detail: (e as Error).message, atNs: m.now() });
      return;
    }
    hv = takeOver(m, handoff, opts.guests ?? [], listeners, guestFailures, opts.waitForVms === true);
    listeners.onHandoff?.(handoff, hv);
  };
  const wall0 = performance.now();
  try {
    const exit = await m.run(runTimeoutMs !== undefined ? { timeoutMs: runTimeoutMs } : {});
    stages[stages.length - 1]!.endMs = ms(exit.atNs);
    bootInfo = readBootInfo(m, postCodes.some((p) => p.code === 0x5f));
    const h = handoff as Handoff | null;
    const hvNow = hv as Hypervisor | null;
    const report: BootReport = {
      machine: { memBytes: opts.memBytes, cpus: opts.cpus, faults: opts.faults.map((f) => f.text), containerSource: opts.containers?.kind === 'registry' ? opts.containers.url : 'local OCI layout' },
      postCodes,
      postErrors: postCodes.filter((p) => p.severity !== 'progress'),
      serial: m.serial,
      debugcon: m.debugcon.text(),
      stages,
      memoryMap: (bootInfo?.e820 ?? []).map((e) => mapEntry(e.base, e.length, e.type)),
      bootInfo,
      containers: h?.containers ?? [],
      eventLog: h ? { pcr: h.pcr, events: h.events } : null,
      handoff: h ? { address: `0x${h.address.toString(16)}`, result: h.result, memoryMap: h.memoryMap.map((r) => mapEntry(r.base, r.length, r.type)), counts: h.counts } : null,
      guests: mergeGuestReports(hvNow?.guestReports() ?? [], guestFailures),
      exit: { reason: exit.reason, code: exit.code, ...(exit.detail ? { detail: exit.detail } : {}) },
      wallMs: Math.round(performance.now() - wall0),
      virtualMs: ms(exit.atNs),
    };
    listeners.onExit?.(m, report, hvNow);
    return report;
  } finally {
    (hv as Hypervisor | null)?.close();
    m.close();
  }
}

/**
 * The hypervisor takes the machine over from the handoff: only usable ranges
 * of the handed-off map (fenced and OS-held ranges never), then the guests.
 */
function takeOver(m: PcMachine, h: Handoff, guests: BootGuest[], listeners: BootListeners, failures: GuestLoadFailure[], waitForVms: boolean): Hypervisor {
  const map = h.memoryMap.map((r) => ({ base: r.base, length: r.length, type: r.type }));
  // A guest that cannot be loaded is reported as such; the others still run.
  const { hypervisor: hv, vms, failures: f } = hypervisorWithGuests(m, installHypervisor(m, map), guests, { keepGoing: true });
  failures.push(...f);
  if (vms.length === 0 && !waitForVms) {
    m.finish({ reason: 'halted', code: 0, detail: guests.length === 0 ? 'handed off to the hypervisor; no guests to run' : 'handed off to the hypervisor; no guest could be loaded', atNs: m.now() });
    return hv;
  }
  for (const vm of vms) vm.onSerial = (t) => listeners.onGuestSerial?.(vm.name, t);
  hv.onAllStopped = () => m.finish({ reason: 'halted', code: 0, detail: 'all guests stopped', atNs: m.now() });
  return hv;
}

function readBootInfo(m: PcMachine, handedOff: boolean): BootInfo | null {
  if (!handedOff) return null;
  try {
    return parseBootInfo(m.memory.read(BOOT_INFO_DEFAULT_ADDRESS, 0x1000), BOOT_INFO_DEFAULT_ADDRESS);
  } catch (e) {
    m.log('boot-info', `could not parse the boot-info block: ${(e as Error).message}`);
    return null;
  }
}

/**
 * Boot succeeded: the OS handed off, and every guest (if any) reported success
 * through isa-debug-exit. `strict` also demands no POST error and no failing container.
 */
export function bootSucceeded(r: BootReport, strict = false): boolean {
  if (!r.handoff || r.exit.reason === 'error') return false;
  if (!r.guests.every((g) => g.exit?.reason === 'debug-exit' && g.exit.code === 1)) return false;
  return !strict || (r.postErrors.length === 0 && r.handoff.result === 'pass');
}
