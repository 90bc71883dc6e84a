/**
 * Where the lightweight OS's firmware containers come from. Either way they
 * reach the OS as fw_cfg files (the contract in oci-fwcfg.mjs):
 * `opt/fm/oci/index.json` plus `opt/fm/blob/<first 40 hex of sha256>` per blob.
 */
import { join } from 'node:path';
import { PROJECT_ROOT } from '../cpu/unicorn/locate.js';
import { layoutToFwCfgFiles } from './oci-fwcfg.mjs';

export const DEFAULT_LAYOUT = join(PROJECT_ROOT, 'images/oci/firmament');

export type ContainerSource = { kind: 'layout'; dir: string } | { kind: 'registry'; url: string };

export interface FwCfgFile {
  name: string;
  data: Uint8Array;
}

export function localLayoutFiles(dir: string): FwCfgFile[] {
  return layoutToFwCfgFiles(dir).map((f) => ({ name: f.name, data: new Uint8Array(f.data) }));
}

/** `timeoutMs`: a registry pull must finish within it (the boot's --timeout). */
export async function containerFwCfgFiles(source: ContainerSource, timeoutMs?: number): Promise<FwCfgFile[]> {
  if (source.kind === 'layout') return localLayoutFiles(source.dir);
  const { registryFwCfgFiles } = await import('./oci-registry.js');
  return registryFwCfgFiles(source.url, timeoutMs !== undefined ? { timeoutMs } : {});
}
