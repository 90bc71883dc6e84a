/**
 * The live-update record: the whole hypervisor without its memory, built from
 * the one state tree (Vm.saveState, X86Cpu records, board device records) plus
 * where everything lives in host RAM (frame allocator, frame references, EPT
 * roots, MSR frames). A new process over the same RAM adopts it: nothing is
 * copied or allocated, and every GPA translates to the same HPA.
 *
 * Version rules (docs/live-update.md): a process reads records from
 * OLDEST_READABLE_VERSION to LIVE_UPDATE_VERSION; a record with a newer
 * version, or older than that window, is refused before anything is touched.
 * Nested records (VM, vCPU, devices, allocator, EPT) carry and check their own versions.
 */
import type { PcMachine } from '../../machine/platform/pc.js';
import { Hypervisor, type HandoffMemoryRange } from '../../hypervisor/hypervisor.js';
import { HostMemoryManager } from '../../hypervisor/host-memory.js';
import type { Vm } from '../../hypervisor/vm.js';
import { loadUnicorn } from '../../machine/cpu/unicorn/binding.js';
import { formatVersion } from '../../machine/cpu/unicorn/locate.js';
import { stateBoolean, stateNumber, stateNumbers, stateRecord, stateString, StateError, type StateRecord, type StateValue } from '../../machine/state.js';

export const LIVE_UPDATE_VERSION = 1;
/** The oldest record this code still reads (raise it only with a note in docs/live-update.md). */
export const OLDEST_READABLE_VERSION = 1;

/** How the host machine was built: the new process builds the same one over the same RAM. */
export interface HostShape {
  /** Host RAM bytes (the shared file's size). */
  hostBytes: number;
  pcpus: number;
  pace: 'realtime' | 'virtual';
  timerSlackMs?: number;
  /** The handoff memory map the hypervisor's allocator was built from. */
  map: HandoffMemoryRange[];
}

const WHO = 'live-update';

/** Guest-physical addresses whose translation is recorded and checked after adoption. */
function probeAddresses(vm: Vm): number[] {
  const ram = vm.vmMemory.ramBytes;
  const out = [0, 0x1000, 0x100000, ram / 2, ram - 0x1000].filter((a) => a < ram);
  for (const m of vm.vmMemory.ept.mappings(0, ram)) {
    if (out.length >= 12) break;
    if (!out.includes(m.gpa)) out.push(m.gpa);
  }
  return out;
}

/**
 * What a VM's live-update record holds beside its state record (clone index,
 * frozen), then the self-check: the adopted tables give the same answers the
 * old process recorded. Both adoption paths (a new VM, or in place over the
 * rehearsal's) end with it.
 */
export function finishAdoptedVm(vm: Vm, r: StateRecord, who: string): void {
  const clone = stateNumber(r, 'cloneIndex', who);
  vm.cloneIndex = clone < 0 ? null : clone;
  vm.frozen = stateBoolean(r, 'frozen', who);
  const probes = stateNumbers(r, 'probes', who);
  const expected = stateNumbers(r, 'translations', who, probes.length);
  const got = translateAll(vm, probes);
  probes.forEach((g, k) => {
    if (got[k] !== expected[k]) throw new StateError(who, `translations[${k}]`, `GPA 0x${g.toString(16)} translates to ${got[k]! < 0 ? 'nothing' : `0x${got[k]!.toString(16)}`} after adoption, 0x${expected[k]!.toString(16)} before`);
  });
}

export function translateAll(vm: Vm, gpas: readonly number[]): number[] {
  return gpas.map((g) => {
    const m = vm.vmMemory.ept.lookup(g);
    return m ? m.hpa + (g - m.gpa) : -1;
  });
}

export function hostShapeRecord(s: HostShape): StateRecord {
  return { hostBytes: s.hostBytes, pcpus: s.pcpus, pace: s.pace, timerSlackMs: s.timerSlackMs ?? -1, map: s.map.map((r) => [r.base, r.length, r.type]) };
}

export function parseHostShape(rec: StateRecord): HostShape {
  const who = `${WHO}.host`;
  const hostBytes = stateNumber(rec, 'hostBytes', who);
  const pcpus = stateNumber(rec, 'pcpus', who);
  const pace = stateString(rec, 'pace', who);
  if (pace !== 'realtime' && pace !== 'virtual') throw new StateError(who, 'pace', `'${pace}' is not realtime or virtual`);
  const slack = stateNumber(rec, 'timerSlackMs', who);
  const mapV = rec['map'];
  if (!Array.isArray(mapV)) throw new StateError(who, 'map', 'expected [base, length, type] triples');
  const map = mapV.map((t, i) => {
    if (!Array.isArray(t) || t.length !== 3 || !t.every((x) => typeof x === 'number')) throw new StateError(who, `map[${i}]`, 'expected [base, length, type]');
    return { base: t[0] as number, length: t[1] as number, type: t[2] as number };
  });
  return { hostBytes, pcpus, pace, ...(slack >= 0 ? { timerSlackMs: slack } : {}), map };
}

/**
 * The record of a hypervisor between scheduling rounds. Refuses (StateError
 * naming the field) what it cannot carry: a CPU inside a run, linked clones,
 * lazily restored VMs.
 */
export function saveLiveState(hv: Hypervisor, shape: HostShape): StateRecord {
  const m = hv.machine;
  if (m.hostCpus.some((h) => h.running)) throw new StateError(WHO, 'running', 'a host CPU is inside a run; update between scheduling rounds');
  if (m.memory.ramSize !== shape.hostBytes) throw new StateError(WHO, 'hostBytes', `machine has ${m.memory.ramSize} bytes of RAM, the shape says ${shape.hostBytes}`);
  const msr = hv.msrFrames.residentState();
  return {
    version: LIVE_UPDATE_VERSION,
    unicorn: formatVersion(loadUnicorn().version),
    host: hostShapeRecord(shape),
    nowNs: m.timeline.nowNs(),
    serial: m.serial,
    // The machine's own devices keep timers on the same timeline: they decide where slices end, so they travel too.
    devices: Object.fromEntries(m.io.devices().map((d) => [d.snapshotId, d.saveState()])),
    lapics: m.lapics.map((l) => l.saveState()),
    hostMemory: hv.host.residentState(),
    msr: { permissionMap: msr.permissionMap, freeSlots: msr.freeSlots },
    counters: hv.counters,
    vms: hv.vms.map((vm) => {
      const probes = probeAddresses(vm);
      return {
        id: vm.id,
        controlAreas: [...vm.msrExits.areas],
        memory: vm.vmMemory.residentState(),
        // The scheduler's view of the VM travels with it (shares, idle state), as in a snapshot.
        state: { ...vm.saveState(), scheduling: hv.schedulingRecord(vm) },
        cloneIndex: vm.cloneIndex ?? -1,
        frozen: vm.frozen,
        probes,
        translations: translateAll(vm, probes),
      };
    }),
  };
}

/** Checks the record's own version window (nested records check theirs when adopted). */
export function checkLiveStateVersion(rec: StateRecord): void {
  const v = rec['version'];
  if (typeof v !== 'number' || !Number.isInteger(v)) throw new StateError(WHO, 'version', `expected a version number, got ${JSON.stringify(v ?? null)}`);
  if (v > LIVE_UPDATE_VERSION) throw new StateError(WHO, 'version', `record version ${v} is newer than this build reads (${LIVE_UPDATE_VERSION}): update to a newer Firmament, not an older one`);
  if (v < OLDEST_READABLE_VERSION) throw new StateError(WHO, 'version', `record version ${v} is older than this build reads (${OLDEST_READABLE_VERSION}..${LIVE_UPDATE_VERSION})`);
}

function record(v: StateValue | undefined, who: string, field: string): StateRecord {
  if (v === null || v === undefined || typeof v !== 'object' || Array.isArray(v) || v instanceof Uint8Array) throw new StateError(who, field, 'expected record');
  return v;
}

/**
 * Builds the hypervisor of `rec` on `machine` (a fresh machine built to the
 * record's host shape over the same RAM): the allocator, frame references,
 * MSR frames and every VM's EPT tables and frames are adopted where they are,
 * then each VM's state tree is restored. Nothing is written to guest or host
 * RAM, so a refusal at any point leaves the old process free to resume.
 * The VMs are not scheduled until the caller resumes the machine.
 */
export function adoptLiveState(rec: StateRecord, machine: PcMachine): { hypervisor: Hypervisor; vms: Vm[] } {
  checkLiveStateVersion(rec);
  const unicorn = stateString(rec, 'unicorn', WHO);
  const mine = formatVersion(loadUnicorn().version);
  if (unicorn !== mine) machine.log('live-update', `record from Unicorn ${unicorn}, this process has ${mine}: vCPUs restore from their portable records`);
  const shape = parseHostShape(stateRecord(rec, 'host', WHO));
  if (machine.memory.ramSize !== shape.hostBytes) throw new StateError(WHO, 'host.hostBytes', `record has ${shape.hostBytes} bytes of host RAM, this machine ${machine.memory.ramSize}`);
  if (machine.hostCpus.length !== shape.pcpus) throw new StateError(WHO, 'host.pcpus', `record has ${shape.pcpus} host CPUs, this machine ${machine.hostCpus.length}`);
  const vmsV = rec['vms'];
  if (!Array.isArray(vmsV)) throw new StateError(WHO, 'vms', 'expected a list of VM records');
  const counters = record(rec['counters'], WHO, 'counters');
  const rr = stateNumber(counters, 'rr', `${WHO}.counters`);
  const nextVmId = stateNumber(counters, 'nextVmId', `${WHO}.counters`);
  const msrRec = stateRecord(rec, 'msr', WHO);
  const msr = { permissionMap: stateNumber(msrRec, 'permissionMap', `${WHO}.msr`), freeSlots: stateNumbers(msrRec, 'freeSlots', `${WHO}.msr`) };

  const devices = stateRecord(rec, 'devices', WHO);
  const lapics = rec['lapics'];
  if (!Array.isArray(lapics) || lapics.length !== machine.lapics.length) throw new StateError(WHO, 'lapics', `expected ${machine.lapics.length} LAPIC records`);
  // Time first: devices re-arm their timers against it.
  machine.timeline.reset(stateNumber(rec, 'nowNs', WHO));
  for (const d of machine.io.devices()) d.restoreState(stateRecord(devices, d.snapshotId, `${WHO}.devices`));
  machine.lapics.forEach((l, i) => l.restoreState(record(lapics[i], `${WHO}.lapics`, String(i))));
  machine.serial = stateString(rec, 'serial', WHO);
  const hv = new Hypervisor(machine, shape.map, new HostMemoryManager(machine.memory, shape.map));
  const vms: Vm[] = [];
  try {
    hv.host.adoptResident(stateRecord(rec, 'hostMemory', WHO));
    const portable = unicorn !== mine;
    vmsV.forEach((v, i) => {
      const who = `${WHO}.vms[${i}]`;
      const r = record(v, WHO, `vms[${i}]`);
      const id = stateNumber(r, 'id', who);
      const state = stateRecord(r, 'state', who);
      const memory = stateRecord(r, 'memory', who);
      hv.msrFrames.adoptResident(msr, stateNumbers(r, 'controlAreas', who));
      hv.counters = { rr, nextVmId: id };
      const vm = hv.newVm({
        name: stateString(state, 'name', `${who}.state`),
        vcpus: stateNumber(state, 'vcpus', `${who}.state`),
        memBytes: stateNumber(state, 'memBytes', `${who}.state`),
        clockNs: stateNumber(state, 'clockNs', `${who}.state`),
        memory: { adopt: memory },
      });
      vms.push(vm);
      vm.restoreState(state, portable ? { portable: true } : {});
      finishAdoptedVm(vm, r, who);
      hv.addVm(vm);
      hv.restoreScheduling(vm, state);
    });
    hv.msrFrames.adoptResident(msr);
    hv.counters = { rr, nextVmId };
  } catch (e) {
    // Nothing of the old process's RAM was written; just drop what this process built (no frees: they would write nothing either, but the allocator is thrown away).
    for (const vm of vms) for (const c of vm.vcpus) c.cpu.close();
    throw e;
  }
  return { hypervisor: hv, vms };
}
