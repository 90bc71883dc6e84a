// Types for tools/build-guests.mjs (plain ESM JavaScript run by node).
export declare const DEFAULT_OUT_DIR: string;
/** Guest name -> target architecture. */
export declare const GUESTS: Readonly<Record<'hello' | 'paging' | 'timer' | 'mwait' | 'smp' | 'dirtier' | 'compute', 'i386' | 'x86_64'>>;
export declare class GuestBuildError extends Error {
  constructor(message: string, detail?: string);
}
export interface BuildGuestsOptions {
  /** Rebuild even when the input hash stamp says the image is up to date. */
  force?: boolean;
  /** Output directory (default images/build/guests under the repo). */
  outDir?: string;
  /** Tree that holds guests/ (default: this repository). */
  root?: string;
  onProgress?: (name: string, built: boolean, path: string) => void;
}
/** Builds every guest; resolves to guest name -> absolute path of its ELF32 image. */
export declare function buildGuests(options?: BuildGuestsOptions): Promise<Record<string, string>>;
