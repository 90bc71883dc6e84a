export function buildImages(opts?: { force?: boolean; quiet?: boolean }): Promise<{
  firmware: { rom: string; payload: string };
  os: { os: string; containers: Record<string, string> };
  layout: { layoutDir: string; containers: { name: string; manifestDigest: string; layerDigest: string; configDigest: string }[] };
  guests: Record<string, string>;
  /** Example functions of the function service (tools/build-functions.mjs). */
  functions: Record<string, string>;
}>;
