/**
 * The snapshot store (vmm/snapshot): save/load/list/inspect/diff/verify on
 * synthetic VMs, chunk dedup counted in blob files, atomic refusals that leave
 * the store byte-identical, and clear errors for corrupt, missing, truncated
 * and mismatched snapshots.
 */
import { readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { encodeSnapshot } from '../../machine/snapshot/codec.js';
import { CHUNK_SIZE, defaultStoreDir, hashMemory, planIncrementalRestore, SnapshotStore, SnapshotStoreError } from '../../vmm/snapshot/index.js';
import { blobFiles, chunkBlobPath, memoryEquals, MiB, rewriteSnapshot, stateBlobPath, storeFiles, syntheticVm, tempStoreDir } from './helpers.js';

const CREATED = '2026-01-01T00:00:00.000Z';

async function storeWith(...seeds: number[]): Promise<{ dir: string; store: SnapshotStore }> {
  const dir = tempStoreDir();
  const store = SnapshotStore.open(dir);
  for (const s of seeds) await store.save(`vm${s}`, syntheticVm(s), { created: CREATED });
  return { dir, store };
}

async function refusal(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected a refusal');
}

describe('snapshot store: save and load', () => {
  it('loads exactly what was saved: state, every memory range, metadata', async () => {
    const { store, dir } = await storeWith(1);
    const vm = syntheticVm(1);
    const back = await store.load('vm1');
    expect(back.state).toEqual(vm.state);
    expect(memoryEquals(back.memory, vm.memory)).toBe(true);
    expect(back.meta).toEqual(vm.meta);
    // A valid OCI image layout.
    expect(readFileSync(path.join(dir, 'oci-layout'), 'utf8')).toBe('{"imageLayoutVersion":"1.0.0"}');
    const index = JSON.parse(readFileSync(path.join(dir, 'index.json'), 'utf8'));
    expect(index.schemaVersion).toBe(2);
    expect(index.manifests[0].annotations['org.opencontainers.image.ref.name']).toBe('vm1');
    expect(index.manifests[0].artifactType).toBe('application/vnd.firmament.vm-snapshot.v1+json');
  });

  it('stores each distinct non-zero chunk once and zero chunks not at all', async () => {
    const { store, dir } = await storeWith();
    const first = await store.save('vm1', syntheticVm(1), { created: CREATED });
    // 640 KiB + 2 MiB = 42 chunks: 7 hold data, 35 are zero.
    expect(first).toMatchObject({ chunks: 42, zeroChunks: 35, storedChunks: 7, newBlobs: 10, reusedBlobs: 0 });
    expect(blobFiles(dir)).toHaveLength(7 + 3); // chunks + state, config, manifest
    const second = await store.save('vm2', syntheticVm(2), { created: CREATED });
    // The 3 kernel chunks are shared; 4 chunks, the state, config and manifest are new.
    expect(second).toMatchObject({ storedChunks: 7, newBlobs: 7, reusedBlobs: 3, reusedBytes: 3 * CHUNK_SIZE });
    expect(blobFiles(dir)).toHaveLength(17);
    // The same VM under another name (same creation time) adds no blob at all.
    const again = await store.save('vm1-copy', syntheticVm(1), { created: CREATED });
    expect(again.newBlobs).toBe(0);
    expect(again.digest).toBe(first.digest);
    expect(blobFiles(dir)).toHaveLength(17);
    expect((await store.inspect('vm2')).sharedChunks).toBe(3);
  });

  it('lists, inspects and diffs snapshots', async () => {
    const { store } = await storeWith(1, 2);
    const list = await store.list();
    expect(list.map((s) => s.ref)).toEqual(['vm1', 'vm2']);
    expect(list[0]).toMatchObject({ memoryBytes: 0xa0000 + 2 * MiB, chunks: 42, zeroChunks: 35, created: CREATED, meta: { guest: 'synthetic', seed: '1' } });
    const info = await store.inspect('vm1');
    expect(info.ranges).toEqual([{ gpa: 0, length: 0xa0000 }, { gpa: MiB, length: 2 * MiB }]);
    expect(info.state.fields).toEqual(['clock', 'cpu', 'version']);

    const d = await store.diff('vm1', 'vm2');
    expect(d.changed.map((c) => c.gpa)).toEqual([0, 0x10000, 0x20000, 0x200000]);
    expect(d.changedRanges).toEqual([{ gpa: 0, length: 0x30000 }, { gpa: 0x200000, length: CHUNK_SIZE }]);
    expect(d.changedBytes).toBe(4 * CHUNK_SIZE);
    expect(d.chunks).toBe(42);
    expect(d.sameBytes).toBe(38 * CHUNK_SIZE);
    expect(d.state.paths).toEqual(['$.clock.ns', '$.cpu.msrs', '$.cpu.rip']);
    const same = await store.diff('vm1', 'vm1');
    expect(same.changed).toEqual([]);
    expect(same.state.same).toBe(true);
  });

  it('a chunk table matches the memory hashed live, with zero chunks as null', async () => {
    const { store } = await storeWith(1);
    const table = await store.chunkTable('vm1');
    expect(table).toEqual(hashMemory(syntheticVm(1).memory));
    expect(table.filter((c) => c.digest === null)).toHaveLength(35);
    const chunk = await store.readChunk(table[0]!.digest!);
    expect(Buffer.from(chunk)).toEqual(Buffer.from(syntheticVm(1).memory[0]!.bytes.subarray(0, CHUNK_SIZE)));
  });

  it('delete forgets a name and gc frees only the blobs no other snapshot uses', async () => {
    const { store, dir } = await storeWith(1, 2);
    expect(blobFiles(dir)).toHaveLength(17);
    await store.delete('vm2');
    expect(await store.names()).toEqual(['vm1']);
    expect(blobFiles(dir)).toHaveLength(17); // blobs stay until gc
    const gc = await store.gc();
    expect(gc.removedBlobs).toBe(7);
    expect(blobFiles(dir)).toHaveLength(10);
    expect((await store.verify('vm1')).ok).toBe(true);
    expect((await refusal(store.delete('vm2'))).message).toMatch(/no snapshot 'vm2'/);
  });

  it('two writers at once both land (the store is locked, index.json is never lost)', async () => {
    const dir = tempStoreDir();
    const a = SnapshotStore.open(dir);
    const b = SnapshotStore.open(dir);
    await Promise.all([1, 2, 3, 4].map((s) => (s % 2 ? a : b).save(`vm${s}`, syntheticVm(s))));
    expect(await a.names()).toEqual(['vm1', 'vm2', 'vm3', 'vm4']);
    for (const s of [1, 2, 3, 4]) expect((await a.verify(`vm${s}`)).ok).toBe(true);
  });

  it('the default store folder follows --store, $FIRMAMENT_SNAPSHOTS, then ~/.local/share', () => {
    expect(defaultStoreDir({ FIRMAMENT_SNAPSHOTS: '/srv/snaps' })).toBe('/srv/snaps');
    expect(defaultStoreDir({ XDG_DATA_HOME: '/x' })).toBe('/x/firmament/snapshots');
    expect(defaultStoreDir({})).toMatch(/\.local\/share\/firmament\/snapshots$/);
  });
});

describe('snapshot store: refusals leave the store as it was', () => {
  it('refuses to overwrite a name unless forced; index.json and every blob stay byte-identical', async () => {
    const { store, dir } = await storeWith(1);
    const before = storeFiles(dir);
    const [old] = await store.list();
    const e = await refusal(store.save('vm1', syntheticVm(2)));
    expect(e).toBeInstanceOf(SnapshotStoreError);
    expect(e.message).toMatch(/snapshot 'vm1' already exists .*force/);
    expect(storeFiles(dir)).toEqual(before);
    const forced = await store.save('vm1', syntheticVm(2), { force: true });
    expect(forced.replaced).toBe(old!.digest);
    expect(memoryEquals((await store.load('vm1')).memory, syntheticVm(2).memory)).toBe(true);
  });

  it('refuses bad input before writing anything, naming the field', async () => {
    const { store, dir } = await storeWith(1);
    const before = storeFiles(dir);
    const vm = syntheticVm(3);
    const cases: [unknown, RegExp][] = [
      [{ ...vm, memory: [{ gpa: 0x1234, bytes: new Uint8Array(4096) }] }, /memory\[0\]: GPA 0x1234 length 0x1000 is not 4096-byte page aligned/],
      [{ ...vm, memory: [{ gpa: 0, bytes: new Uint8Array(100) }] }, /not 4096-byte page aligned/],
      [{ ...vm, memory: [{ gpa: 0, bytes: new Uint8Array(0x2000) }, { gpa: 0x1000, bytes: new Uint8Array(0x1000) }] }, /memory\[1\]: GPA 0x1000 overlaps/],
      [{ ...vm, state: { cpu: { tsc: NaN } } }, /\$\.cpu\.tsc: NaN cannot be saved/],
      [{ ...vm, meta: { n: 5 } }, /meta\.n: expected a string/],
      [{ ...vm, state: null }, /state: expected a state record/],
    ];
    for (const [data, msg] of cases) expect((await refusal(store.save('vm3', data as never))).message).toMatch(msg);
    expect((await refusal(store.save('../escape', vm))).message).toMatch(/snapshot name "\.\.\/escape": expected/);
    expect(storeFiles(dir)).toEqual(before);
  });

  it('refuses a folder that is not an OCI layout instead of writing into it', async () => {
    const dir = tempStoreDir();
    writeFileSync(path.join(path.dirname(dir), 'notes.txt'), 'mine');
    const e = await refusal(SnapshotStore.open(path.dirname(dir)).save('vm1', syntheticVm(1)));
    expect(e.message).toMatch(/not an OCI image layout \(no oci-layout file\) and not empty \(notes\.txt\)/);
  });
});

describe('snapshot store: corrupt, missing, truncated and mismatched snapshots', () => {
  it('a flipped byte in a memory chunk: load refuses naming the GPA and blob, verify reports it, nothing is returned', async () => {
    const { store, dir } = await storeWith(1);
    const file = chunkBlobPath(dir, 'vm1', 0x10000);
    const bytes = readFileSync(file);
    bytes[1234]! ^= 1;
    writeFileSync(file, bytes);
    const e = await refusal(store.load('vm1'));
    expect(e).toBeInstanceOf(SnapshotStoreError);
    expect(e.message).toMatch(new RegExp(`snapshot 'vm1': memory chunk at GPA 0x10000: blob sha256:${path.basename(file)} is corrupt`));
    const v = await store.verify('vm1');
    expect(v.ok).toBe(false);
    expect(v.problems).toHaveLength(1);
    expect(v.problems[0]).toMatch(/GPA 0x10000.*corrupt/);
    // Planning an incremental restore that needs that chunk is refused the same way.
    await expect(planIncrementalRestore(store, 'vm1', { memory: syntheticVm(2).memory })).rejects.toThrow(/is corrupt/);
  });

  it('a missing chunk, a truncated state blob, a truncated manifest', async () => {
    const { store, dir } = await storeWith(1, 2);
    rmSync(chunkBlobPath(dir, 'vm1', MiB));
    expect((await refusal(store.load('vm1'))).message).toMatch(/memory chunk at GPA 0x100000: blob sha256:[0-9a-f]{64} is missing/);
    const state = stateBlobPath(dir, 'vm2');
    truncateSync(state, 10);
    expect((await refusal(store.load('vm2'))).message).toMatch(/snapshot 'vm2': state: blob sha256:[0-9a-f]{64} is 10 bytes, expected \d+ \(truncated\)/);
    const index = JSON.parse(readFileSync(path.join(dir, 'index.json'), 'utf8'));
    truncateSync(path.join(dir, 'blobs/sha256', index.manifests[0].digest.slice(7)), 50);
    expect((await refusal(store.load('vm1'))).message).toMatch(/snapshot 'vm1': manifest: blob .* \(truncated\)/);
    // list still lists: the unreadable one with its reason (the state is only read by load/verify).
    const listed = await store.list();
    expect(listed.map((x) => [x.ref, x.ok])).toEqual([['vm1', false], ['vm2', true]]);
    expect(listed[0]!.ok === false && listed[0]!.error).toMatch(/manifest: blob .* \(truncated\)/);
    const all = await Promise.all(['vm1', 'vm2'].map((r) => store.verify(r)));
    expect(all.map((v) => v.ok)).toEqual([false, false]);
    expect((await refusal(store.gc())).message).toMatch(/gc refused: snapshot 'vm1': manifest/);
  });

  it('a state blob with consistent digests but a bad CRC is refused by the codec, naming the section', async () => {
    const { store, dir } = await storeWith(1);
    rewriteSnapshot(dir, 'vm1', {
      state: (b) => {
        const bad = Buffer.from(b);
        bad[bad.length - 1]! ^= 0x40; // last byte of the last byte section
        return bad;
      },
    });
    const e = await refusal(store.load('vm1'));
    expect(e.message).toMatch(/snapshot 'vm1': state blob sha256:[0-9a-f]{64}: snapshot: offset \d+: section \d+ CRC: CRC mismatch in section \d+/);
  });

  it('refuses incompatible versions: an old v1 state record, a newer config format, another chunk size', async () => {
    const { store, dir } = await storeWith(1, 2, 3);
    rewriteSnapshot(dir, 'vm1', { state: () => new Uint8Array(Buffer.concat([Buffer.from('FMSNAP01'), Buffer.from([2, 0, 0, 0]), Buffer.from('{}')])) });
    expect((await refusal(store.load('vm1'))).message).toMatch(/FMSNAP01 is the old format version 1/);
    rewriteSnapshot(dir, 'vm2', { config: (c) => (c['formatVersion'] = 2) });
    expect((await refusal(store.load('vm2'))).message).toMatch(/formatVersion 2: this build reads snapshot config version 1/);
    rewriteSnapshot(dir, 'vm3', { config: (c) => (c['chunkSize'] = 4096) });
    expect((await refusal(store.load('vm3'))).message).toMatch(/chunkSize 4096: this build uses 65536-byte chunks/);
  });

  it('refuses configs that do not match their manifest or point outside the store', async () => {
    const { store, dir } = await storeWith(1, 2, 3);
    rewriteSnapshot(dir, 'vm1', { config: (c) => ((c['memory'] as { chunks: { gpa: number }[] }).chunks[0]!.gpa = 0x1000) });
    expect((await refusal(store.load('vm1'))).message).toMatch(/memory\.chunks\[0\]: GPA 0x1000 length 65536 is not a chunk of memory\.ranges/);
    rewriteSnapshot(dir, 'vm2', { config: (c) => ((c['memory'] as { chunks: { digest: string }[] }).chunks[1]!.digest = '../../../etc/passwd') });
    expect((await refusal(store.load('vm2'))).message).toMatch(/memory\.chunks\[1\]\.digest: expected sha256:<64 hex digits>/);
    rewriteSnapshot(dir, 'vm3', { config: (c) => ((c['memory'] as { chunks: unknown[] }).chunks.length = 6) });
    expect((await refusal(store.load('vm3'))).message).toMatch(/layer sha256:[0-9a-f]{64} is not used by any memory chunk/);
  });

  it('every flipped byte of a rehashed manifest or config is refused with a store error, or changes nothing that is loaded', async () => {
    const { store, dir } = await storeWith(1);
    const indexFile = path.join(dir, 'index.json');
    const original = readFileSync(indexFile);
    const vm = syntheticVm(1);
    let refused = 0;
    for (const which of ['configBytes', 'manifestBytes'] as const) {
      for (let i = 0; ; i += 5) {
        let inRange = true;
        writeFileSync(indexFile, original);
        rewriteSnapshot(dir, 'vm1', {
          [which]: (b: Buffer) => {
            if (i >= b.length) inRange = false;
            const bad = Buffer.from(b);
            if (inRange) bad[i]! ^= 0x01;
            return bad;
          },
        });
        if (!inRange) break;
        try {
          const back = await store.load('vm1');
          expect(back.state).toEqual(vm.state);
          expect(memoryEquals(back.memory, vm.memory)).toBe(true);
        } catch (e) {
          expect(['SnapshotStoreError', 'SnapshotFormatError']).toContain((e as Error).name);
          refused++;
        }
      }
    }
    expect(refused).toBeGreaterThan(200);
  });

  it('a corrupt index.json is named, not a crash', async () => {
    const { store, dir } = await storeWith(1);
    writeFileSync(path.join(dir, 'index.json'), '{"schemaVersion": 2, "manifests": [');
    expect((await refusal(store.list())).message).toMatch(/index\.json: not JSON/);
  });
});

describe('incremental restore', () => {
  it('moves only the chunks that differ; applying them gives the target memory exactly', async () => {
    const { store } = await storeWith(1, 2);
    const current = syntheticVm(1).memory;
    const plan = await planIncrementalRestore(store, 'vm2', { memory: current });
    expect(plan.writes.map((w) => w.gpa)).toEqual([0, 0x10000, 0x20000, 0x200000]);
    expect(plan.bytesMoved).toBe(4 * CHUNK_SIZE);
    expect(plan.fullBytes).toBe(0xa0000 + 2 * MiB);
    expect(plan.state).toEqual(syntheticVm(2).state);
    for (const w of plan.writes) {
      const r = current.find((m) => w.gpa >= m.gpa && w.gpa < m.gpa + m.bytes.length)!;
      r.bytes.set(w.bytes, w.gpa - r.gpa);
    }
    expect(memoryEquals(current, syntheticVm(2).memory)).toBe(true);
    // Once there, nothing moves.
    expect((await planIncrementalRestore(store, 'vm2', { memory: current })).bytesMoved).toBe(0);
  });

  it('from a dirty log: a chunk the guest wrote is rewritten even when it happens to match, zero chunks are zero-filled', async () => {
    const { store } = await storeWith(1, 2);
    // The VM was restored from vm1, then dirtied chunk 0x2f (GPA 0x2f0000, zero in both) and chunk 0 (differs anyway).
    const plan = await planIncrementalRestore(store, 'vm2', { base: 'vm1', dirtyChunks: [0x2f, 0] });
    expect(plan.writes.map((w) => w.gpa)).toEqual([0, 0x10000, 0x20000, 0x200000, 0x2f0000]);
    const zero = plan.writes.find((w) => w.zero)!;
    expect(zero.bytes.every((b) => b === 0)).toBe(true);
    expect(plan.bytesMoved).toBe(5 * CHUNK_SIZE);
    expect((await refusal(planIncrementalRestore(store, 'vm2', { base: 'vm1', dirtyChunks: [0x12345] }))).message).toMatch(/dirty chunk 74565 \(GPA 0x123450000\) is outside the memory of 'vm1'/);
  });

  it('compares against another snapshot and refuses a different memory layout', async () => {
    const { store } = await storeWith(1, 2);
    expect((await planIncrementalRestore(store, 'vm2', { snapshot: 'vm1' })).chunksMoved).toBe(4);
    const e = await refusal(planIncrementalRestore(store, 'vm2', { memory: [{ gpa: 0, bytes: new Uint8Array(MiB) }] }));
    expect(e.message).toMatch(/memory layout differs .*0x0\+0xa0000 0x100000\+0x200000 vs 0x0\+0x100000.*a full restore is needed/);
  });
});

describe('state codec inside the store', () => {
  it('the state layer is codec v2 bytes', async () => {
    const { dir } = await storeWith(1);
    expect(Buffer.from(readFileSync(stateBlobPath(dir, 'vm1'))).equals(Buffer.from(encodeSnapshot(syntheticVm(1).state)))).toBe(true);
  });
});
