/**
 * The one state mechanism behind snapshot, migration and live update.
 * Modelled on Cloud Hypervisor's Pausable / Snapshottable / Migratable traits:
 * every device, vCPU and VM implements these, and the three features are
 * built on top of them, never on ad-hoc copies.
 */

/** A JSON-safe value, plus raw bytes (encoded by the snapshot writer). */
export type StateValue =
  | number
  | string
  | boolean
  | null
  | Uint8Array
  | StateValue[]
  | { [key: string]: StateValue };

export type StateRecord = { [key: string]: StateValue };

export interface Pausable {
  pause(): void;
  resume(): void;
  readonly paused: boolean;
}

export interface Snapshottable {
  /** Stable identifier inside its parent, e.g. "uart@0x3f8". */
  readonly snapshotId: string;
  /** Version of the state layout; restore refuses unknown versions. */
  readonly stateVersion: number;
  saveState(): StateRecord;
  /** Throws StateError with the field name when the record does not fit. */
  restoreState(state: StateRecord): void;
}

export class StateError extends Error {
  constructor(
    readonly component: string,
    readonly field: string,
    message: string,
  ) {
    super(`${component}: state field '${field}': ${message}`);
    this.name = 'StateError';
  }
}

/** Typed field readers for restoreState implementations. */
export function stateNumber(rec: StateRecord, field: string, component: string): number {
  const v = rec[field];
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new StateError(component, field, `expected number, got ${describe(v)}`);
  return v;
}

export function stateBoolean(rec: StateRecord, field: string, component: string): boolean {
  const v = rec[field];
  if (typeof v !== 'boolean') throw new StateError(component, field, `expected boolean, got ${describe(v)}`);
  return v;
}

export function stateString(rec: StateRecord, field: string, component: string): string {
  const v = rec[field];
  if (typeof v !== 'string') throw new StateError(component, field, `expected string, got ${describe(v)}`);
  return v;
}

export function stateBytes(rec: StateRecord, field: string, component: string, length?: number): Uint8Array {
  const v = rec[field];
  if (!(v instanceof Uint8Array)) throw new StateError(component, field, `expected bytes, got ${describe(v)}`);
  if (length !== undefined && v.length !== length) throw new StateError(component, field, `expected ${length} bytes, got ${v.length}`);
  return v;
}

export function stateNumbers(rec: StateRecord, field: string, component: string, length?: number): number[] {
  const v = rec[field];
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'number')) throw new StateError(component, field, `expected number[], got ${describe(v)}`);
  if (length !== undefined && v.length !== length) throw new StateError(component, field, `expected ${length} numbers, got ${v.length}`);
  return v as number[];
}

export function stateRecord(rec: StateRecord, field: string, component: string): StateRecord {
  const v = rec[field];
  if (v === null || typeof v !== 'object' || Array.isArray(v) || v instanceof Uint8Array) throw new StateError(component, field, `expected record, got ${describe(v)}`);
  return v;
}

export function checkVersion(rec: StateRecord, expected: number, component: string): void {
  const v = rec['version'];
  if (v !== expected) throw new StateError(component, 'version', `expected ${expected}, got ${describe(v)}`);
}

function describe(v: StateValue | undefined): string {
  if (v === undefined) return 'nothing';
  if (v === null) return 'null';
  if (v instanceof Uint8Array) return `bytes[${v.length}]`;
  if (Array.isArray(v)) return 'array';
  return typeof v;
}
