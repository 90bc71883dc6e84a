#!/usr/bin/env node
// Builds every image the machine boots (firmware ROM, test payload, the lightweight OS,
// its firmware containers as an OCI layout, guests) from source, reproducibly; each
// builder skips work when its inputs are unchanged.
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { buildFirmware } from './build-firmware.mjs';
import { buildGuests } from './build-guests.mjs';
import { buildFunctions } from './build-functions.mjs';
import { buildOs } from './build-os.mjs';
import { buildOciLayout } from './oci-layout.mjs';

export async function buildImages({ force = false, quiet = true } = {}) {
  const firmware = await buildFirmware({ force, quiet });
  const os = await buildOs({ force, quiet });
  const layout = await buildOciLayout({ force, quiet });
  const guests = await buildGuests({ force, quiet });
  const functions = await buildFunctions({ force });
  return { firmware, os, layout, guests, functions };
}

if (path.resolve(process.argv[1] ?? '') === fileURLToPath(import.meta.url)) {
  try {
    const out = await buildImages({ force: process.argv.includes('--force'), quiet: false });
    console.log(JSON.stringify({ firmware: out.firmware.rom, os: out.os.os, layout: out.layout.layoutDir, guests: out.guests }, null, 2));
  } catch (e) {
    console.error(e.message ?? e);
    process.exit(1);
  }
}
