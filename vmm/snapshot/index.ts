/** The snapshot store (docs/snapshots.md): what the VMM and the CLI import. */
export { SnapshotStore, defaultStoreDir } from './store.js';
export type { SaveOptions, SaveReport, SnapshotSummary, SnapshotListEntry, SnapshotDetails, VerifyReport, ChunkDiff, GcReport } from './store.js';
export { SnapshotStoreError } from './errors.js';
export { CHUNK_SIZE, PAGE_SIZE, chunkIndexOf, type MemoryRange, type VmSnapshotData } from './format.js';
export { hashMemory, type ChunkEntry } from './chunks.js';
export { planIncrementalRestore, type CurrentMemory, type IncrementalRestorePlan, type ChunkWrite } from './incremental.js';
export { parseRemoteRef, type RegistryOptions, type TransferReport } from './registry.js';
