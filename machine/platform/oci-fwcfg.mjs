// How an OCI image layout reaches the lightweight OS: as fw_cfg files. Plain
// JavaScript because both the machine (TypeScript) and the build script
// tools/oci-layout.mjs (run by node) use this one contract.
//   opt/fm/oci/index.json            the layout's index.json bytes
//   opt/fm/blob/<first 40 hex>       every blob, by the first 40 hex digits of its sha256
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';

export const FWCFG_INDEX = 'opt/fm/oci/index.json';
export const FWCFG_BLOB_PREFIX = 'opt/fm/blob/';

/**
 * The fw_cfg files that serve a layout to the OS: opt/fm/oci/index.json and
 * opt/fm/blob/<first 40 hex digits of the sha256> for every file in
 * blobs/sha256/ (served as stored, corrupted or not: the OS verifies). Sorted by name.
 * @param {string} layoutDir
 * @returns {{ name: string, data: Buffer }[]}
 */
export function layoutToFwCfgFiles(layoutDir) {
  const files = [{ name: FWCFG_INDEX, data: readFileSync(path.join(layoutDir, 'index.json')) }];
  const blobDir = path.join(layoutDir, 'blobs', 'sha256');
  for (const f of readdirSync(blobDir).sort()) {
    if (!/^[0-9a-f]{64}$/.test(f)) continue;
    files.push({ name: `${FWCFG_BLOB_PREFIX}${f.slice(0, 40)}`, data: readFileSync(path.join(blobDir, f)) });
  }
  return files.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}
