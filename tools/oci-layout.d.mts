// Types for tools/oci-layout.mjs (plain ESM JavaScript run by node).

/** images/oci/firmament under the repository. */
export declare const DEFAULT_LAYOUT_DIR: string;
export declare const MT_INDEX: 'application/vnd.oci.image.index.v1+json';
export declare const MT_MANIFEST: 'application/vnd.oci.image.manifest.v1+json';
export declare const MT_CONFIG: 'application/vnd.oci.image.config.v1+json';
export declare const MT_LAYER: 'application/vnd.oci.image.layer.v1.tar';
export declare const REF_NAME: 'org.opencontainers.image.ref.name';
/** fw_cfg name of the layout's index.json. */
export declare const FWCFG_INDEX: 'opt/fm/oci/index.json';
/** fw_cfg names of blobs: this prefix + the first 40 hex digits of the blob's sha256. */
export declare const FWCFG_BLOB_PREFIX: 'opt/fm/blob/';
/** Port ranges [lo, hi] that no grant may cover. */
export declare const FORBIDDEN_PORTS: readonly (readonly [number, number])[];

/** firmware/containers/<name>/container.json, validated. */
export interface ContainerMeta {
  name: string;
  purpose: string;
  /** bytes: image + stack + heap limit (org.firmament.memory) */
  memory: number;
  /** org.firmament.time-limit-ms */
  timeLimitMs: number;
  /** grants: "port:0xA-0xB", "port:0xA", "ram-test", "fwcfg" */
  devices: string[];
  /** part of the default set (false: test-only images) */
  default: boolean;
}
export declare function loadContainerMeta(name: string): Promise<ContainerMeta>;
/** Names of the default-set containers, sorted. */
export declare function defaultContainers(): Promise<string[]>;

export interface TarEntry {
  name: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  type: string;
  magic: string;
  checksumOk: boolean;
  data: Buffer;
}
/** A ustar archive with one regular file (mode 0755, uid/gid 0, mtime 0). */
export declare function makeTar(name: string, data: Uint8Array): Buffer;
export declare function readTar(buf: Buffer): TarEntry[];

export interface ContainerImage {
  name: string;
  manifest: Buffer;
  manifestDigest: string;
  config: Buffer;
  configDigest: string;
  layer: Buffer;
  layerDigest: string;
}
/** The blobs of one image: a pure function of its metadata and ELF. */
export declare function containerImage(meta: ContainerMeta, elf: Uint8Array): ContainerImage;

export interface LayoutContainer {
  name: string;
  /** "sha256:<64 hex>" */
  manifestDigest: string;
  layerDigest: string;
  configDigest: string;
}
export interface BuildOciLayoutOptions {
  /** Rewrite the layout even when it is already identical. */
  force?: boolean;
  quiet?: boolean;
  /** Default DEFAULT_LAYOUT_DIR. */
  layoutDir?: string;
  /** Container names to include (default: the default set). Always sorted by name in the index. */
  containers?: string[];
}
/** Builds the container ELFs (tools/build-os.mjs) and writes the OCI layout. */
export declare function buildOciLayout(opts?: BuildOciLayoutOptions): Promise<{ layoutDir: string; built: boolean; containers: LayoutContainer[] }>;

export interface FwCfgFile {
  name: string;
  data: Buffer;
}
/**
 * fw_cfg files serving a layout (sorted by name): opt/fm/oci/index.json = index.json,
 * opt/fm/blob/<first 40 hex of sha256> = each file of blobs/sha256 as stored.
 */
export declare function layoutToFwCfgFiles(layoutDir: string): FwCfgFile[];
/** Writes the files into dir; resolves to QEMU arguments (-fw_cfg name=N,file=P ...). */
export declare function writeFwCfgFiles(files: readonly { name: string; data: Uint8Array }[], dir: string): Promise<string[]>;
/** Structural check: digests and sizes of every descriptor, media types, tar, labels. Empty = good. */
export declare function checkLayout(layoutDir: string): string[];
/** Copies a layout to outDir and flips one byte of one container's blob (keeping its file name). */
export declare function corruptLayout(opts: {
  layoutDir: string;
  outDir: string;
  container: string;
  blob?: 'manifest' | 'config' | 'layer';
  offset?: number;
}): Promise<{ layoutDir: string; digest: string; offset: number }>;
