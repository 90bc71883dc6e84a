/** Every pane, keyed by id. */
import type { PaneId } from '../ui-state.js';
import type { PaneRenderer } from './pane.js';
import { timelinePane } from './timeline-pane.js';
import { consolePane } from './console-pane.js';
import { cpuPane } from './cpu-pane.js';
import { disasmPane } from './disasm-pane.js';
import { memoryPane } from './memory-pane.js';
import { pagewalkPane } from './pagewalk-pane.js';
import { vcpusPane } from './vcpus-pane.js';
import { eventsPane } from './events-pane.js';
import { securityPane } from './security-pane.js';

export const PANES: Record<PaneId, PaneRenderer> = {
  timeline: timelinePane,
  console: consolePane,
  cpu: cpuPane,
  disasm: disasmPane,
  memory: memoryPane,
  pagewalk: pagewalkPane,
  vcpus: vcpusPane,
  events: eventsPane,
  security: securityPane,
};
export type { PaneContent, PaneRenderer } from './pane.js';
