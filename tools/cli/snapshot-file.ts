/**
 * `--snapshot-on-exit FILE` and `tui --restore FILE`: a machine snapshot plus
 * the shape of the machine it came from (which command built it, RAM, CPUs,
 * faults, guests), so a restore can build a machine of the same shape before
 * handing the saved state to PcMachine.restoreState.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { decodeSnapshot, encodeSnapshot } from '../../machine/snapshot/codec.js';
import { StateError, type StateRecord, type StateValue } from '../../machine/state.js';
import type { PcMachine } from '../../machine/platform/pc.js';
import type { GuestFileSpec } from '../../hypervisor/guest-files.js';
import type { VmImage } from '../../hypervisor/hypervisor.js';
import { UsageError } from './args.js';

const FORMAT = 'firmament-machine-snapshot';
const VERSION = 1;

/** How the machine was built: enough to build another one that restoreState accepts. */
export type MachineShape =
  | { command: 'boot'; memBytes: number; cpus: number; faults: string[]; seed: number; guests: GuestFileSpec[]; handedOff: boolean }
  | { command: 'run'; pcpus: number; guests: GuestFileSpec[] };

/** --snapshot-unless-status N: the exit status for which no snapshot is written (none: always write). */
export function snapshotSkipStatus(v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 255) throw new UsageError(`--snapshot-unless-status ${v}: expected an exit status from 0 to 255`);
  return n;
}

/** What the JSON reports of boot and run say about the snapshot. */
export type SnapshotOutcome = { file: string; bytes: number } | { file: string; error: string };

/**
 * Saves the machine's state with its shape. Saving can be refused (a running
 * CPU, state the machine cannot save yet): the run itself must not fail for
 * that, so the error comes back as the outcome instead of being thrown.
 */
export function writeMachineSnapshot(file: string, machine: PcMachine, shape: MachineShape, vms?: () => VmImage[]): SnapshotOutcome {
  // A `run` machine is its VMs (the hypervisor's state lives outside the machine record); a boot is the machine.
  let content: StateRecord;
  try {
    content = vms ? { vms: vms().map((v) => ({ state: v.state, memory: v.memory.map((r) => ({ gpa: r.gpa, bytes: r.bytes })) })) } : { machine: machine.saveState() };
  } catch (e) {
    return { file, error: `saving the machine state failed: ${(e as Error).message}` };
  }
  const bytes = encodeSnapshot({ format: FORMAT, version: VERSION, shape: shapeRecord(shape), ...content });
  try {
    writeFileSync(file, bytes);
  } catch (e) {
    return { file, error: `writing ${file} failed: ${(e as Error).message}` };
  }
  return { file, bytes: bytes.length };
}

function shapeRecord(shape: MachineShape): StateRecord {
  const guests: StateValue[] = shape.guests.map((g) => ({ path: g.path, memBytes: g.memBytes, vcpus: g.vcpus, ...(g.cmdline !== undefined ? { cmdline: g.cmdline } : {}) }));
  return shape.command === 'boot' ? { ...shape, faults: [...shape.faults], guests } : { ...shape, guests };
}

export interface MachineSnapshot {
  shape: MachineShape;
  /** A boot's machine record. */
  machine?: StateRecord;
  /** A run's VMs. */
  vms?: VmImage[];
}

/** Reads a file written by writeMachineSnapshot; errors name the file and the field. */
export function readMachineSnapshot(file: string): MachineSnapshot {
  let raw: Uint8Array;
  try {
    raw = new Uint8Array(readFileSync(file));
  } catch (e) {
    throw new StateError(file, 'file', (e as Error).message);
  }
  const root = decodeSnapshot(raw);
  const at = `${file}`;
  if (root['format'] !== FORMAT) throw new StateError(at, 'format', `expected '${FORMAT}' (a file written by --snapshot-on-exit), got ${JSON.stringify(root['format'] ?? null)}`);
  if (root['version'] !== VERSION) throw new StateError(at, 'version', `expected ${VERSION}, got ${JSON.stringify(root['version'] ?? null)}`);
  const machineRec = root['machine'];
  const vmsRaw = root['vms'];
  if (!isRecord(machineRec) && !Array.isArray(vmsRaw)) throw new StateError(at, 'machine', 'expected the machine state record or a list of VMs');
  const machine = isRecord(machineRec) ? machineRec : undefined;
  const vms = Array.isArray(vmsRaw)
    ? vmsRaw.map((v, i): VmImage => {
        if (!isRecord(v) || !isRecord(v['state']) || !Array.isArray(v['memory'])) throw new StateError(at, `vms[${i}]`, 'expected {state, memory}');
        const memory = v['memory'].map((r, k) => {
          if (!isRecord(r) || typeof r['gpa'] !== 'number' || !(r['bytes'] instanceof Uint8Array)) throw new StateError(at, `vms[${i}].memory[${k}]`, 'expected {gpa, bytes}');
          return { gpa: r['gpa'], bytes: r['bytes'] };
        });
        return { state: v['state'], memory };
      })
    : undefined;
  const body = { ...(machine ? { machine } : {}), ...(vms ? { vms } : {}) };
  const s = root['shape'];
  if (!isRecord(s)) throw new StateError(at, 'shape', 'expected a record');
  const num = (k: string, min = 0): number => {
    const v = s[k];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min) throw new StateError(at, `shape.${k}`, `expected a whole number, got ${JSON.stringify(v ?? null)}`);
    return v;
  };
  const guestsRaw = s['guests'];
  if (!Array.isArray(guestsRaw)) throw new StateError(at, 'shape.guests', 'expected a list');
  const guests = guestsRaw.map((g, i): GuestFileSpec => {
    if (!isRecord(g) || typeof g['path'] !== 'string' || typeof g['memBytes'] !== 'number' || typeof g['vcpus'] !== 'number') throw new StateError(at, `shape.guests[${i}]`, 'expected {path, memBytes, vcpus}');
    const cmdline = g['cmdline'];
    return { path: g['path'], memBytes: g['memBytes'], vcpus: g['vcpus'], ...(typeof cmdline === 'string' ? { cmdline } : {}) };
  });
  if (s['command'] === 'run') return { ...body, shape: { command: 'run', pcpus: num('pcpus'), guests } };
  if (s['command'] !== 'boot') throw new StateError(at, 'shape.command', `expected 'boot' or 'run', got ${JSON.stringify(s['command'] ?? null)}`);
  const faults = s['faults'];
  if (!Array.isArray(faults) || !faults.every((f) => typeof f === 'string')) throw new StateError(at, 'shape.faults', 'expected a list of fault specs');
  return { ...body, shape: { command: 'boot', memBytes: num('memBytes'), cpus: num('cpus'), faults: faults as string[], seed: num('seed', -Infinity), guests, handedOff: s['handedOff'] === true } };
}

function isRecord(v: StateValue | undefined): v is StateRecord {
  return v !== null && v !== undefined && typeof v === 'object' && !Array.isArray(v) && !(v instanceof Uint8Array);
}
