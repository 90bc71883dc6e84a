/** What the user is looking at: every pane renders from a snapshot plus this state. */
import type { AddressSpace } from '../machine/inspect/memory-view.js';
import type { AnomalyNotice } from '../machine/debug/protocol.js';

export const PANE_IDS = ['timeline', 'console', 'cpu', 'disasm', 'memory', 'pagewalk', 'vcpus', 'events', 'security'] as const;
export type PaneId = (typeof PANE_IDS)[number];

export const PANE_TITLES: Record<PaneId, string> = {
  timeline: 'Boot timeline',
  console: 'Console',
  cpu: 'CPU',
  disasm: 'Disassembly',
  memory: 'Memory',
  pagewalk: 'Page walk',
  vcpus: 'VMs / vCPUs',
  events: 'Events',
  security: 'Security',
};

export interface UiState {
  /** Selected CPU number in the inspection API's list (machine CPUs, then guest vCPUs). */
  cpu: number;
  focus: PaneId;
  zoom: boolean;
  memory: { space: AddressSpace; address: bigint };
  /** null: follow the CPU's RIP. */
  disasmAddress: bigint | null;
  walkAddress: bigint | null;
  consoleId: string;
  /** First shown line per pane; undefined = the pane's natural position (tail for logs, RIP for code). */
  scroll: Partial<Record<PaneId, number>>;
  message: { text: string; error: boolean } | null;
  /** The Security pane: anomalies from the security service (null: not asked yet; unavailable: why not). */
  security: { anomalies: AnomalyNotice[]; selected: number; unavailable: string | null };
}

export function initialUiState(): UiState {
  return {
    cpu: 0,
    focus: 'cpu',
    zoom: false,
    memory: { space: 'physical', address: 0n },
    disasmAddress: null,
    walkAddress: null,
    consoleId: 'com1',
    scroll: {},
    message: null,
    security: { anomalies: [], selected: -1, unavailable: null },
  };
}
