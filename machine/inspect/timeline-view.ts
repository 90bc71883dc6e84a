/**
 * Boot timeline: POST codes as the POST port latched them (with names from
 * firmware/post-codes.json) grouped into boot stages, plus the typed slot
 * for the firmware-container list that the container loader will fill.
 */
import type { PcMachine } from '../platform/pc.js';
import { describePostCode, hex2, type PostSeverity } from '../platform/post-codes.js';
import { nsToMs } from './hex.js';

export interface PostCodeView {
  code: number;
  hex: string;
  name: string;
  severity: PostSeverity;
  description: string;
  atMs: number;
}

export interface StageView {
  name: string;
  startMs: number;
  /** null while the stage is still running. */
  endMs: number | null;
  /** The POST codes written during the stage, as hex. */
  codes: string[];
}

/** Before the handoff a container is pending or running; the handoff block reports the rest. */
export type FirmwareContainerStatus = 'pending' | 'running' | 'pass' | 'fail' | 'fixed' | 'rejected' | 'timeout';

export interface FirmwareFinding {
  severity: 'info' | 'warning' | 'error' | 'critical';
  message: string;
}

/** One entry of the firmware-container list (filled by the container loader once it exists). */
export interface FirmwareContainerView {
  name: string;
  status: FirmwareContainerStatus;
  findings: FirmwareFinding[];
}

/** Extra timeline sources; each is optional so the bare machine needs none. */
export interface TimelineHooks {
  firmwareContainers?: () => readonly FirmwareContainerView[];
}

export interface TimelineView {
  postCodes: PostCodeView[];
  /** How many POST codes exist in total (postCodes may be the tail only). */
  totalPostCodes: number;
  stages: StageView[];
  last: PostCodeView | null;
  errors: PostCodeView[];
  firmwareContainers: FirmwareContainerView[];
  nowMs: number;
}

/**
 * Stage boundaries keyed by the POST code that starts each stage: the same
 * table as machine/platform/boot.ts, which keeps its copy private. The
 * handoff (a 'handoff' machine event) starts the 'hypervisor' stage.
 */
export const STAGE_STARTS: readonly (readonly [number, string])[] = [
  [0x01, 'real-mode'],
  [0x02, 'protected-mode'],
  [0x03, 'long-mode-init'],
  [0x04, 'post'],
  [0x5f, 'containers'],
];
export const HANDOFF_STAGE = 'hypervisor';

export function postCodeView(code: number, atNs: number): PostCodeView {
  const info = describePostCode(code);
  return { code, hex: hex2(code), name: info.name, severity: info.severity, description: info.description, atMs: nsToMs(atNs) };
}

/** Pure: stages from a POST code sequence (and the handoff time, if any), as boot() computes them. */
export function stagesFrom(codes: readonly { code: number; atNs: number }[], handoffAtNs: number | null = null): StageView[] {
  const stages: StageView[] = [{ name: 'reset', startMs: 0, endMs: null, codes: [] }];
  const start = (name: string, atNs: number): void => {
    if (stages[stages.length - 1]!.name === name) return;
    stages[stages.length - 1]!.endMs = nsToMs(atNs);
    stages.push({ name, startMs: nsToMs(atNs), endMs: null, codes: [] });
  };
  let handoffDone = handoffAtNs === null;
  for (const c of codes) {
    if (!handoffDone && c.atNs > handoffAtNs!) {
      start(HANDOFF_STAGE, handoffAtNs!);
      handoffDone = true;
    }
    const s = STAGE_STARTS.find(([code]) => code === c.code);
    if (s) start(s[1], c.atNs);
    stages[stages.length - 1]!.codes.push(hex2(c.code));
  }
  if (!handoffDone) start(HANDOFF_STAGE, handoffAtNs!);
  return stages;
}

export function timelineView(machine: PcMachine, opts: { limit?: number; hooks?: TimelineHooks } = {}): TimelineView {
  const codes = machine.post.codes();
  const limit = opts.limit ?? 256;
  const views = codes.slice(-limit).map((c) => postCodeView(c.code, c.atNs));
  const handoff = machine.events.find((e) => e.kind === 'handoff');
  const stages = stagesFrom(codes, handoff ? handoff.atNs : null);
  const nowMs = nsToMs(machine.now());
  if (machine.exit) stages[stages.length - 1]!.endMs = nsToMs(machine.exit.atNs);
  return {
    postCodes: views,
    totalPostCodes: codes.length + machine.post.dropped(),
    stages,
    last: views[views.length - 1] ?? null,
    errors: codes.filter((c) => describePostCode(c.code).severity !== 'progress').map((c) => postCodeView(c.code, c.atNs)),
    firmwareContainers: [...(opts.hooks?.firmwareContainers?.() ?? [])],
    nowMs,
  };
}
