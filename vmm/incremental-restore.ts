/**
 * Incremental restore: a running VM goes back to a stored snapshot P by
 * writing only the 64 KiB chunks of its memory that differ from P's, then
 * loading P's state record (vCPUs, devices, clock) into the same VM.
 *
 * What differs comes from the dirty log when the VM still holds a snapshot
 * the store knows (the one it was restored from or last saved as: its
 * "base"), with dirty logging on since then: only the chunks written since
 * the base are hashed, the rest take the base's digests. Otherwise every
 * chunk of the VM's memory is hashed. Either way only chunks whose content
 * really differs from P's are moved.
 */
import { createHash } from 'node:crypto';
import type { Hypervisor } from '../hypervisor/hypervisor.js';
import { Vm } from '../hypervisor/vm.js';
import { checkVersion, stateNumber, StateError, type StateRecord } from '../machine/state.js';
import { chunkIndexOf, planIncrementalRestore, SnapshotStoreError, type ChunkEntry, type MemoryRange, type SaveReport, type SnapshotStore } from './snapshot/index.js';

const PAGE = 4096;
const ZERO_PAGE = new Uint8Array(PAGE);

/** The stored snapshot a VM's memory equalled, and what the dirty log has reported since. */
export interface SnapshotBase {
  /** Manifest digest: a ref can be replaced, a digest names one snapshot for good. */
  digest: string;
  ref: string;
  /** GuestMemory.dirtyLogEpoch after our last harvest; another reader's harvest moves it and voids the log. */
  epoch: number;
  /** Chunk indices (gpa / CHUNK_SIZE) written since the base, harvested so far. */
  dirtyChunks: Set<number>;
}

const bases = new WeakMap<Vm, SnapshotBase>();

/** The snapshot this VM last equalled, if it is tracked (saved or restored through this module). */
export function snapshotBaseOf(vm: Vm): SnapshotBase | null {
  return bases.get(vm) ?? null;
}

export interface IncrementalRestoreReport {
  target: string;
  method: 'dirty-log' | 'hash';
  /** Bytes written into guest memory, and what a full restore of the target's memory writes. */
  bytesMoved: number;
  fullBytes: number;
  chunksMoved: number;
  chunksTotal: number;
  /** Chunks the dirty log reported written since the base (dirty-log method), else null. */
  chunksDirty: number | null;
  /** Guest memory hashed to find the differences. */
  bytesHashed: number;
  /** Why the hash method was used (no base, logging off, base gone, other layout), or null. */
  fallback: string | null;
}

/** Guest RAM as contiguous ranges (EPT leaves of any size merged), so chunks are whole 64 KiB ones. */
export function coalesceRanges(ranges: Iterable<MemoryRange>): MemoryRange[] {
  const runs: MemoryRange[][] = [];
  let end = -1;
  for (const r of [...ranges].sort((a, b) => a.gpa - b.gpa)) {
    if (r.gpa === end) runs.at(-1)!.push(r);
    else runs.push([r]);
    end = r.gpa + r.bytes.length;
  }
  return runs.map((run) => {
    if (run.length === 1) return run[0]!;
    const bytes = new Uint8Array(run.reduce((n, r) => n + r.bytes.length, 0));
    let off = 0;
    for (const r of run) {
      bytes.set(r.bytes, off);
      off += r.bytes.length;
    }
    return { gpa: run[0]!.gpa, bytes };
  });
}

/** Starts (or re-arms) the VM's dirty log now: what it reports from here on was written after this instant. */
function armDirtyLog(vm: Vm): number {
  const mem = vm.vmMemory;
  if (mem.isDirtyReader()) mem.harvestDirty();
  else mem.startDirtyLog();
  return mem.dirtyLogEpoch;
}

async function digestOf(store: SnapshotStore, ref: string): Promise<string> {
  const entry = (await store.layout.readIndex()).find((e) => e.ref === ref || e.digest === ref);
  if (!entry) {
    // chunkTable names the store and lists what it has.
    await store.chunkTable(ref);
    throw new SnapshotStoreError(`${store.dir}: no snapshot '${ref}'`);
  }
  return entry.digest;
}

/**
 * Saves the VM (between rounds) as `ref` and makes that snapshot its base:
 * dirty logging runs from this instant, so a later incremental restore
 * needs to hash only what the VM wrote since.
 */
export async function saveVmSnapshot(hypervisor: Hypervisor, vm: Vm, store: SnapshotStore, ref: string, opts: { force?: boolean; meta?: Record<string, string>; track?: boolean } = {}): Promise<SaveReport> {
  const image = hypervisor.snapshotVm(vm);
  const memory = coalesceRanges(image.memory);
  // Armed before the await: the VM must not run between the memory copy and the log's start.
  const epoch = opts.track === false ? null : armDirtyLog(vm);
  bases.delete(vm);
  const report = await store.save(ref, { state: image.state, memory, ...(opts.meta ? { meta: opts.meta } : {}) }, opts.force ? { force: true } : {});
  if (epoch !== null) bases.set(vm, { digest: report.digest, ref, epoch, dirtyChunks: new Set() });
  return report;
}

/** Builds a VM from a stored snapshot (Hypervisor.restoreVm) whose base is that snapshot. */
export async function restoreVmSnapshot(
  hypervisor: Hypervisor,
  store: SnapshotStore,
  ref: string,
  opts: { name?: string; portable?: boolean; start?: boolean; populate?: 'eager' | 'lazy'; track?: boolean } = {},
): Promise<Vm> {
  const digest = await digestOf(store, ref);
  const data = await store.load(digest);
  const vm = hypervisor.restoreVm(data.state, { ranges: data.memory, populate: opts.populate ?? 'eager' }, { ...(opts.name ? { name: opts.name } : {}), ...(opts.portable ? { portable: true } : {}), ...(opts.start === false ? { start: false } : {}) });
  if (opts.track !== false) bases.set(vm, { digest, ref, epoch: armDirtyLog(vm), dirtyChunks: new Set() });
  return vm;
}

/** Hashes one chunk of the VM's memory as the store would (null: all zero). */
function hashChunk(vm: Vm, gpa: number, length: number): string | null {
  // An unpopulated page of a lazily restored VM holds its source's bytes, not zeros: populate before reading.
  vm.vmMemory.prepopulate([{ gpa, length }]);
  const h = createHash('sha256');
  let zero = true;
  for (let page = gpa; page < gpa + length; page += PAGE) {
    const bytes = vm.vmMemory.readPage(page);
    if (zero && !Buffer.from(bytes.buffer, bytes.byteOffset, PAGE).equals(ZERO_PAGE)) zero = false;
    h.update(bytes);
  }
  return zero ? null : `sha256:${h.digest('hex')}`;
}

function sameLayout(a: readonly ChunkEntry[], b: readonly ChunkEntry[]): boolean {
  return a.length === b.length && a.every((c, i) => c.gpa === b[i]!.gpa && c.length === b[i]!.length);
}

/** RAM pages outside the target's ranges: a fresh restore leaves them zero, so nonzero ones must be cleared. */
function holePages(vm: Vm, table: readonly ChunkEntry[]): number[] {
  const covered = new Set<number>();
  for (const c of table) for (let p = c.gpa; p < c.gpa + c.length; p += PAGE) covered.add(p);
  const out: number[] = [];
  for (let p = 0; p < vm.vmMemory.ramBytes; p += PAGE) if (!covered.has(p)) out.push(p);
  return out;
}

/**
 * Brings a running VM, paused between rounds, back to snapshot `targetRef`:
 * moves only the chunks that differ, restores its state record (vCPUs,
 * devices, the VM's clock set back to the snapshot's time) into the same VM.
 * Afterwards the VM runs on exactly as a fresh restore of the target would.
 * Everything that can be refused is checked before the VM is touched.
 */
export async function restoreIncrementally(
  hypervisor: Hypervisor,
  vm: Vm,
  store: SnapshotStore,
  targetRef: string,
  opts: { portable?: boolean; method?: 'auto' | 'hash'; track?: boolean } = {},
): Promise<IncrementalRestoreReport> {
  const who = `incremental restore of VM '${vm.name}' to '${targetRef}'`;
  if (!hypervisor.vms.includes(vm)) throw new Error(`${who}: the VM is not on this hypervisor`);
  if (vm.state !== 'running') throw new Error(`${who}: the VM has stopped (${vm.exit?.reason ?? 'unknown'}); restore the snapshot into a new VM instead`);
  if (hypervisor.machine.hostCpus.some((h) => h.running)) throw new Error(`${who}: a CPU is running; pause the machine between rounds first`);
  const mem = vm.vmMemory;
  const targetDigest = await digestOf(store, targetRef);
  const want = await store.chunkTable(targetDigest);
  const last = want.at(-1);
  if (last && last.gpa + last.length > mem.ramBytes) throw new SnapshotStoreError(`${who}: the snapshot's memory reaches 0x${(last.gpa + last.length).toString(16)}, beyond the VM's ${mem.ramBytes} bytes of RAM`);

  // The dirty log since the base, if it is exact and the base still in the store with the same layout.
  const base = bases.get(vm);
  let dirty: Set<number> | null = null;
  let baseTable: ChunkEntry[] | null = null;
  let fallback: string | null = null;
  if (opts.method === 'hash') fallback = 'hash method requested';
  else if (!base) fallback = 'no base snapshot known for this VM';
  else if (!mem.isDirtyReader() || mem.dirtyLogEpoch !== base.epoch) fallback = 'the dirty log was stopped or harvested by someone else since the base';
  else {
    baseTable = await store.chunkTable(base.digest).catch((e: unknown) => {
      if (e instanceof SnapshotStoreError) return null;
      throw e;
    });
    if (!baseTable) fallback = `base snapshot '${base.ref}' (${base.digest}) is no longer in the store`;
    else if (!sameLayout(baseTable, want)) fallback = `base snapshot '${base.ref}' has another memory layout`;
    else {
      // Kept in the base until a restore succeeds, so a failed attempt loses nothing.
      for (const page of mem.harvestDirty()) base.dirtyChunks.add(chunkIndexOf(page));
      base.epoch = mem.dirtyLogEpoch;
      dirty = base.dirtyChunks;
    }
  }

  let bytesHashed = 0;
  const current: ChunkEntry[] = want.map((c, i) => {
    if (dirty && baseTable && !dirty.has(chunkIndexOf(c.gpa))) return { gpa: c.gpa, length: c.length, digest: baseTable[i]!.digest };
    bytesHashed += c.length;
    return { gpa: c.gpa, length: c.length, digest: hashChunk(vm, c.gpa, c.length) };
  });
  // Outside the target's ranges a fresh restore has zeros; with a base of the same layout only dirty pages can be nonzero there.
  const holes = holePages(vm, want).filter((p) => !dirty || dirty.has(chunkIndexOf(p)));
  bytesHashed += holes.length * PAGE;
  const nonzeroHoles = holes.filter((p) => mem.prepopulate([{ gpa: p, length: PAGE }]) >= 0 && !Buffer.from(mem.readPage(p)).equals(ZERO_PAGE));

  const plan = await planIncrementalRestore(store, targetDigest, { chunks: current });
  checkFits(plan.state, vm, who);

  for (const w of plan.writes) mem.write(w.gpa, w.bytes);
  for (const p of nonzeroHoles) mem.write(p, ZERO_PAGE);
  try {
    vm.loadInPlace(plan.state, opts.portable ? { portable: true } : {});
  } catch (e) {
    // Memory is the target's already; a VM with half a state must not run on.
    bases.delete(vm);
    vm.stop({ reason: 'error', code: 2, detail: `${who}: ${(e as Error).message}` });
    throw e;
  }
  // Other engines may hold translations of the old contents.
  hypervisor.shootdown();
  bases.delete(vm);
  if (opts.track !== false) bases.set(vm, { digest: targetDigest, ref: targetRef, epoch: armDirtyLog(vm), dirtyChunks: new Set() });
  // A snapshot of a stopped VM restores stopped: the hypervisor learns it as for any stop.
  if ((vm.state as Vm['state']) === 'stopped') vm.onStop?.(vm);

  const zeroed = nonzeroHoles.length * PAGE;
  return {
    target: targetRef,
    method: dirty ? 'dirty-log' : 'hash',
    bytesMoved: plan.bytesMoved + zeroed,
    fullBytes: plan.fullBytes,
    chunksMoved: plan.chunksMoved + new Set(nonzeroHoles.map(chunkIndexOf)).size,
    chunksTotal: plan.chunksTotal,
    chunksDirty: dirty ? dirty.size : null,
    bytesHashed,
    fallback,
  };
}

/** The record must be for a VM of this shape; checked before guest memory is written. */
function checkFits(state: StateRecord, vm: Vm, who: string): void {
  checkVersion(state, Vm.STATE_VERSION, `${who}: vm`);
  const vcpus = stateNumber(state, 'vcpus', 'vm');
  if (vcpus !== vm.vcpuCount) throw new StateError('vm', 'vcpus', `${who}: the snapshot has ${vcpus} vCPUs, the VM ${vm.vcpuCount}`);
  const memBytes = stateNumber(state, 'memBytes', 'vm');
  if (memBytes !== vm.vmMemory.ramBytes) throw new StateError('vm', 'memBytes', `${who}: the snapshot has ${memBytes} bytes of RAM, the VM ${vm.vmMemory.ramBytes}`);
  const clockNs = stateNumber(state, 'clockNs', 'vm');
  if (!Number.isSafeInteger(clockNs) || clockNs < 0 || clockNs > 2 ** 50) throw new StateError('vm', 'clockNs', `${who}: ${clockNs} is not a virtual time in 0..2^50 ns`);
}
