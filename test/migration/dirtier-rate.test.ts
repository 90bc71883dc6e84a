import { beforeAll, describe, expect, it } from 'vitest';
import { buildImages } from '../../tools/build-images.mjs';
import { closeSource, startSource } from './helpers.js';

/**
 * The dirtier's rate=KiB/s (the bench's "64 MiB guest dirtying 4 MiB/s"):
 * it writes at that rate of guest time, and the words it writes (its
 * checksum) are those of the unpaced guest.
 */
const MiB = 1024 * 1024;
let images: Record<string, string>;

async function runDirtier(cmdline: string): Promise<{ serial: string; atNs: number; code: number }> {
  const src = startSource({ path: images['dirtier']!, memBytes: 64 * MiB, vcpus: 1, cmdline });
  try {
    const exit = await src.running;
    return { serial: src.vm.serial, atNs: src.vm.exit?.atNs ?? exit.atNs, code: exit.code };
  } finally {
    closeSource(src);
  }
}

const checksum = (serial: string): string => /checksum (0x[0-9a-f]+)/.exec(serial)?.[1] ?? 'none';

describe('dirtier rate=KiB/s', () => {
  beforeAll(async () => {
    images = (await buildImages({ quiet: true })).guests;
  });

  it('writes 2 MiB at 1024 KiB/s in 2 s of guest time, with the unpaced checksum', async () => {
    const paced = await runDirtier('mib=1 passes=2 rate=1024');
    const unpaced = await runDirtier('mib=1 passes=2');
    expect(paced.code).toBe(1);
    expect(paced.serial).toContain('1 MiB, 2 passes, 1024 KiB/s');
    expect(checksum(paced.serial)).toBe(checksum(unpaced.serial));
    expect(checksum(paced.serial)).not.toBe('none');
    // 2 MiB / (1 MiB/s): 2 s, give or take the 1 ms quota granularity and the boot.
    expect(paced.atNs / 1e9).toBeGreaterThanOrEqual(1.99);
    expect(paced.atNs / 1e9).toBeLessThan(2.05);
    // Unpaced it is far quicker in guest time.
    expect(unpaced.atNs).toBeLessThan(paced.atNs / 4);
  }, 120_000);

  it('refuses a rate that is not a number', async () => {
    const bad = await runDirtier('mib=1 rate=fast');
    expect(bad.serial).toMatch(/rate= must be a number of KiB per second/);
    expect(bad.code).not.toBe(1);
  }, 60_000);
});
