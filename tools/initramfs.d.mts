/** Types for tools/initramfs.mjs. */
export interface NewcEntry {
  path: string;
  /** st_mode with the file type bits (0o100644 file, 0o040755 directory, 0o120777 symlink). */
  mode: number;
  /** File contents (a symlink's target); directories have none. */
  data?: Uint8Array;
}
export function newcArchive(entries: readonly NewcEntry[]): Uint8Array;
export function busyboxInitramfs(busybox: Uint8Array): Buffer;
