/**
 * Boots the default machine: firmware ROM, next stage over fw_cfg, POST codes
 * tracked into stages, and a report that the CLI prints as JSON or text.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PcMachine, type MachineExit, type PcConfig } from './pc.js';
import { describePostCode, hex2, type PostSeverity } from './post-codes.js';
import { parseBootInfo, BOOT_INFO_DEFAULT_ADDRESS, type BootInfo } from './boot-info.js';
import { PROJECT_ROOT } from '../cpu/unicorn/locate.js';
import type { FaultSpec } from './faults.js';

export const NEXT_STAGE_FILE = 'opt/firmament/next-stage';
export const DEFAULT_ROM = join(PROJECT_ROOT, 'images/build/firmware.rom');
export const DEFAULT_NEXT_STAGE = join(PROJECT_ROOT, 'images/build/payload.elf');

export interface BootOptions {
  memBytes: number;
  cpus: number;
  faults: FaultSpec[];
  timeoutMs?: number;
  seed?: number;
  pace?: PcConfig['pace'];
  romPath?: string;
  nextStagePath?: string;
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
  machine: { memBytes: number; cpus: number; faults: string[] };
  postCodes: PostCodeRecord[];
  postErrors: PostCodeRecord[];
  serial: string;
  debugcon: string;
  stages: StageRecord[];
  memoryMap: MemoryMapEntry[];
  bootInfo: BootInfo | null;
  exit: { reason: MachineExit['reason']; code: number; detail?: string };
  wallMs: number;
  virtualMs: number;
}

/** Stage boundaries keyed by the POST code that starts each stage. */
const STAGE_STARTS: [number, string][] = [
  [0x01, 'real-mode'],
  [0x02, 'protected-mode'],
  [0x03, 'long-mode-init'],
  [0x04, 'post'],
  [0x5f, 'next-stage'],
];

const E820_NAMES: Record<number, string> = { 1: 'usable', 2: 'reserved', 3: 'acpi', 4: 'nvs', 5: 'bad' };
const ms = (ns: number): number => Math.round(ns / 1000) / 1000;

export interface BootListeners {
  onSerial?: (text: string) => void;
  onPostCode?: (rec: PostCodeRecord) => void;
  onMachine?: (m: PcMachine) => void;
}

export function createBootMachine(opts: BootOptions): PcMachine {
  const rom = new Uint8Array(readFileSync(opts.romPath ?? DEFAULT_ROM));
  const next = new Uint8Array(readFileSync(opts.nextStagePath ?? DEFAULT_NEXT_STAGE));
  return new PcMachine({
    memBytes: opts.memBytes,
    cpus: opts.cpus,
    rom,
    faults: opts.faults,
    seed: opts.seed ?? 0,
    pace: opts.pace ?? 'realtime',
    fwCfgFiles: [{ name: NEXT_STAGE_FILE, data: next }],
  });
}

export async function boot(opts: BootOptions, listeners: BootListeners = {}): Promise<BootReport> {
  const m = createBootMachine(opts);
  listeners.onMachine?.(m);
  const postCodes: PostCodeRecord[] = [];
  const stages: StageRecord[] = [{ name: 'reset', startMs: 0, endMs: null }];
  let bootInfo: BootInfo | null = null;
  m.onSerial = (t) => listeners.onSerial?.(t);
  m.onPostCode = (code, atNs) => {
    const info = describePostCode(code);
    const rec: PostCodeRecord = { code, hex: hex2(code), name: info.name, severity: info.severity, atMs: ms(atNs) };
    postCodes.push(rec);
    const stage = STAGE_STARTS.find(([c]) => c === code);
    if (stage && stages[stages.length - 1]!.name !== stage[1]) {
      stages[stages.length - 1]!.endMs = rec.atMs;
      stages.push({ name: stage[1], startMs: rec.atMs, endMs: null });
    }
    if (code === 0x5f) bootInfo = readBootInfo(m, false);
    listeners.onPostCode?.(rec);
  };
  const wall0 = performance.now();
  try {
    const exit = await m.run(opts.timeoutMs !== undefined ? { timeoutMs: opts.timeoutMs } : {});
    stages[stages.length - 1]!.endMs = ms(exit.atNs);
    // The firmware finishes the block (last POST code, checksum) around the handoff; read it again if needed.
    const handedOff = postCodes.some((p) => p.code === 0x5f);
    const bi = (bootInfo as BootInfo | null) ?? (handedOff ? readBootInfo(m, true) : null);
    return {
      machine: { memBytes: opts.memBytes, cpus: opts.cpus, faults: opts.faults.map((f) => f.text) },
      postCodes,
      postErrors: postCodes.filter((p) => p.severity !== 'progress'),
      serial: m.serial,
      debugcon: m.debugcon.text(),
      stages,
      memoryMap: (bi?.e820 ?? []).map((e) => ({ base: `0x${e.base.toString(16)}`, length: `0x${e.length.toString(16)}`, type: e.type, typeName: E820_NAMES[e.type] ?? `type ${e.type}` })),
      bootInfo: bi,
      exit: { reason: exit.reason, code: exit.code, ...(exit.detail ? { detail: exit.detail } : {}) },
      wallMs: Math.round(performance.now() - wall0),
      virtualMs: ms(exit.atNs),
    };
  } finally {
    m.close();
  }
}

function readBootInfo(m: PcMachine, report: boolean): BootInfo | null {
  try {
    const bytes = m.memory.read(BOOT_INFO_DEFAULT_ADDRESS, 0x1000);
    return parseBootInfo(bytes, BOOT_INFO_DEFAULT_ADDRESS);
  } catch (e) {
    if (report) m.log('boot-info', `could not parse the boot-info block: ${(e as Error).message}`);
    return null;
  }
}

/** Boot succeeded: the next stage reported success through isa-debug-exit (value 0 -> status 1). */
export function bootSucceeded(r: BootReport, strict = false): boolean {
  if (r.exit.reason !== 'debug-exit' || r.exit.code !== 1) return false;
  return !strict || r.postErrors.length === 0;
}
