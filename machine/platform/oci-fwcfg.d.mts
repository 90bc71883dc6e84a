// Types for machine/platform/oci-fwcfg.mjs.

/** fw_cfg name of the layout's index.json. */
export declare const FWCFG_INDEX: 'opt/fm/oci/index.json';
/** fw_cfg names of blobs: this prefix + the first 40 hex digits of the blob's sha256. */
export declare const FWCFG_BLOB_PREFIX: 'opt/fm/blob/';
/** The fw_cfg files that serve an OCI layout to the OS, sorted by name. */
export declare function layoutToFwCfgFiles(layoutDir: string): { name: string; data: Buffer }[];
