#!/usr/bin/env node
// Builds every image the machine boots (firmware ROM, next-stage payload, guests)
// from source, reproducibly; each builder skips work when its inputs are unchanged.
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { buildFirmware } from './build-firmware.mjs';
import { buildGuests } from './build-guests.mjs';

export async function buildImages({ force = false, quiet = true } = {}) {
  const firmware = await buildFirmware({ force, quiet });
  const guests = await buildGuests({ force, quiet });
  return { firmware, guests };
}

if (path.resolve(process.argv[1] ?? '') === fileURLToPath(import.meta.url)) {
  try {
    const out = await buildImages({ force: process.argv.includes('--force'), quiet: false });
    console.log(JSON.stringify(out, null, 2));
  } catch (e) {
    console.error(e.message ?? e);
    process.exit(1);
  }
}
