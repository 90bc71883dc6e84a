/** A snapshot store refusal: names the store, the snapshot and the blob or field at fault. */
export class SnapshotStoreError extends Error {
  override name = 'SnapshotStoreError';
}
