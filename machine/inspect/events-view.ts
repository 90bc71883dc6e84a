/**
 * Events log view: machine events (exceptions, interrupts, hlt/wake, ipi,
 * mwait, exits) newest last. Debugcon output is logged by the machine one
 * event per byte; it belongs to the consoles view, so it is left out here
 * unless asked for.
 */
import type { MachineEvent, PcMachine } from '../platform/pc.js';
import { nsToMs } from './hex.js';

export interface EventView {
  atMs: number;
  cpu: number | null;
  kind: string;
  detail: string;
}

export interface EventsView {
  events: EventView[];
  /** Events of each kind in the machine's bounded log (the last 10 000). */
  countsByKind: Record<string, number>;
}

export interface EventsRequest {
  limit?: number;
  kinds?: readonly string[];
  includeConsoleBytes?: boolean;
}

export const CONSOLE_EVENT_KINDS: readonly string[] = ['debugcon'];

export function eventView(e: MachineEvent): EventView {
  return { atMs: nsToMs(e.atNs), cpu: e.cpu ?? null, kind: e.kind, detail: e.detail };
}

export function isShownEvent(e: MachineEvent, req: EventsRequest = {}): boolean {
  if (req.kinds && !req.kinds.includes(e.kind)) return false;
  return req.includeConsoleBytes === true || !CONSOLE_EVENT_KINDS.includes(e.kind);
}

export function eventsView(machine: PcMachine, req: EventsRequest = {}): EventsView {
  const limit = req.limit ?? 200;
  const out: EventView[] = [];
  const countsByKind: Record<string, number> = {};
  for (let i = machine.events.length - 1; i >= 0; i--) {
    const e = machine.events[i]!;
    countsByKind[e.kind] = (countsByKind[e.kind] ?? 0) + 1;
    if (out.length < limit && isShownEvent(e, req)) out.push(eventView(e));
  }
  return { events: out.reverse(), countsByKind };
}
