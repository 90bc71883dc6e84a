/** Rebuilds stale firmware and guest images before a command uses them. */
export async function ensureImages(quiet: boolean): Promise<void> {
  // Imported lazily so `--help` stays fast.
  const { buildImages } = await import('../build-images.mjs');
  await buildImages({ quiet });
}
