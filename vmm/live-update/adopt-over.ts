/**
 * The successor's fast path: the final live-update record loaded into the
 * hypervisor it already adopted from the rehearsal record (taken while the
 * guests still ran), instead of building every VM again inside the blackout.
 *
 * Allowed only when nothing about where things live has changed between the
 * two records: the same host shape, frame allocator, frame references and MSR
 * frames, the same VMs (ids, names, sizes, control areas) with the same EPT
 * tables and held frames. Then the built boards, vCPU contexts and guest
 * memory objects are exactly what a fresh adoption would build, and only the
 * state that moves (time, devices, vCPUs, counters) is loaded, in place.
 * Otherwise (an idle guest that touched a new page, a VM that stopped) the
 * caller adopts from scratch, as before.
 */
import type { PcMachine } from '../../machine/platform/pc.js';
import type { Hypervisor } from '../../hypervisor/hypervisor.js';
import type { Vm } from '../../hypervisor/vm.js';
import { stateNumber, stateRecord, stateString, StateError, type StateRecord, type StateValue } from '../../machine/state.js';
import { checkLiveStateVersion, finishAdoptedVm } from './state.js';

const WHO = 'live-update';

/** Counters of a VM's memory record that move without anything moving in host RAM: loaded, not compared. */
const MEMORY_COUNTERS = ['eptViolations', 'lazyFaults', 'cowCopies'] as const;

export function sameValue(a: StateValue | undefined, b: StateValue | undefined): boolean {
  if (a === b) return true;
  if (a === null || b === null || a === undefined || b === undefined || typeof a !== 'object' || typeof b !== 'object') return false;
  if (a instanceof Uint8Array || b instanceof Uint8Array) {
    if (!(a instanceof Uint8Array && b instanceof Uint8Array) || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
    return true;
  }
  if (Array.isArray(a) || Array.isArray(b)) {
    if (!(Array.isArray(a) && Array.isArray(b)) || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!sameValue(a[i], b[i])) return false;
    return true;
  }
  const ka = Object.keys(a);
  if (ka.length !== Object.keys(b).length) return false;
  for (const k of ka) if (!sameValue(a[k], b[k])) return false;
  return true;
}

function vmRecords(rec: StateRecord): StateRecord[] | null {
  const v = rec['vms'];
  if (!Array.isArray(v) || !v.every((x) => x !== null && typeof x === 'object' && !Array.isArray(x) && !(x instanceof Uint8Array))) return null;
  return v as StateRecord[];
}

function residentMemory(vmRec: StateRecord): StateRecord | null {
  const m = vmRec['memory'];
  if (m === null || typeof m !== 'object' || Array.isArray(m) || m instanceof Uint8Array) return null;
  const rest: StateRecord = { ...m };
  for (const k of MEMORY_COUNTERS) delete rest[k];
  return rest;
}

/** Why the rehearsal's adoption cannot take `rec` in place (null: it can). */
export function residentChange(before: StateRecord, rec: StateRecord): string | null {
  for (const k of ['unicorn', 'host', 'hostMemory', 'msr'] as const) if (!sameValue(before[k], rec[k])) return k;
  const a = vmRecords(before);
  const b = vmRecords(rec);
  if (!a || !b || a.length !== b.length) return 'vms';
  for (let i = 0; i < a.length; i++) {
    const [x, y] = [a[i]!, b[i]!];
    for (const k of ['id', 'controlAreas', 'probes', 'translations'] as const) if (!sameValue(x[k], y[k])) return `vms[${i}].${k}`;
    if (!sameValue(residentMemory(x) ?? undefined, residentMemory(y) ?? undefined)) return `vms[${i}].memory`;
    const [sx, sy] = [x['state'], y['state']];
    if (sx === null || sy === null || typeof sx !== 'object' || typeof sy !== 'object' || Array.isArray(sx) || Array.isArray(sy) || sx instanceof Uint8Array || sy instanceof Uint8Array) return `vms[${i}].state`;
    for (const k of ['name', 'vcpus', 'memBytes'] as const) if (!sameValue(sx[k], sy[k])) return `vms[${i}].state.${k}`;
  }
  return null;
}

/**
 * Loads `rec` into `adopted` (the adoption of `before` on `machine`), or
 * returns the reason it cannot (then nothing was changed and the caller
 * adopts `rec` from scratch). A record that fails while loading throws, as a
 * fresh adoption would.
 */
export function adoptOver(before: StateRecord, adopted: { hypervisor: Hypervisor; vms: Vm[] }, rec: StateRecord, machine: PcMachine): { ok: true } | { ok: false; why: string } {
  checkLiveStateVersion(rec);
  const why = residentChange(before, rec);
  if (why !== null) return { ok: false, why: `${why} changed since the rehearsal` };
  const hv = adopted.hypervisor;
  const counters = stateRecord(rec, 'counters', WHO);
  const rr = stateNumber(counters, 'rr', `${WHO}.counters`);
  const nextVmId = stateNumber(counters, 'nextVmId', `${WHO}.counters`);
  const devices = stateRecord(rec, 'devices', WHO);
  const lapics = rec['lapics'];
  if (!Array.isArray(lapics) || lapics.length !== machine.lapics.length) throw new StateError(WHO, 'lapics', `expected ${machine.lapics.length} LAPIC records`);
  // Time first: devices re-arm their timers against it.
  machine.timeline.reset(stateNumber(rec, 'nowNs', WHO));
  for (const d of machine.io.devices()) d.restoreState(stateRecord(devices, d.snapshotId, `${WHO}.devices`));
  machine.lapics.forEach((l, i) => {
    const r = lapics[i];
    if (r === null || r === undefined || typeof r !== 'object' || Array.isArray(r) || r instanceof Uint8Array) throw new StateError(`${WHO}.lapics`, String(i), 'expected record');
    l.restoreState(r);
  });
  machine.serial = stateString(rec, 'serial', WHO);
  const portable = stateString(rec, 'unicorn', WHO) !== stateString(before, 'unicorn', WHO);
  vmRecords(rec)!.forEach((r, i) => {
    const who = `${WHO}.vms[${i}]`;
    const vm = adopted.vms[i]!;
    const state = stateRecord(r, 'state', who);
    const memory = stateRecord(r, 'memory', who);
    vm.loadInPlace(state, portable ? { portable: true } : {});
    for (const k of MEMORY_COUNTERS) vm.vmMemory[k] = stateNumber(memory, k, `${who}.memory`);
    finishAdoptedVm(vm, r, who);
    hv.restoreScheduling(vm, state, { inPlace: true });
  });
  hv.counters = { rr, nextVmId };
  return { ok: true };
}
