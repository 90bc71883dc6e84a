import { describe, expect, it } from 'vitest';
import { createBootMachine } from '../../vmm/boot.js';
import { decodeSnapshot, encodeSnapshot, SnapshotFormatError } from '../../machine/snapshot/codec.js';
import { buildImages } from '../../tools/build-images.mjs';
import { StateError } from '../../machine/state.js';

const MiB = 1024 * 1024;
const config = { memBytes: 64 * MiB, cpus: 1, faults: [], pace: 'virtual' as const };

describe('machine snapshot and restore', () => {
  it('a boot paused at POST 0x40, saved, and restored into a new machine finishes exactly like an uninterrupted boot', async () => {
    await buildImages({ quiet: true });
    const reference = createBootMachine(config);
    const refExit = await reference.run({ timeoutMs: 60_000 });
    const refSerial = reference.serial;
    reference.close();

    const first = createBootMachine(config);
    first.onPostCode = (code) => code === 0x40 && first.pause();
    const running = first.run({ timeoutMs: 60_000 });
    // The run loop yields to us only between slices, so once paused the machine is quiescent.
    while (!first.paused) await new Promise((r) => setTimeout(r, 5));
    const bytes = encodeSnapshot(first.saveState());
    first.stop('snapshot taken');
    await running;
    first.close();

    const second = createBootMachine(config);
    second.restoreState(decodeSnapshot(bytes));
    const exit = await second.run({ timeoutMs: 60_000 });
    expect(second.serial).toBe(refSerial);
    expect(exit.code).toBe(refExit.code);
    expect(exit.atNs).toBe(refExit.atNs);
    second.close();
  });

  it('refuses truncated or mismatched snapshots with an error naming the field', async () => {
    const m = createBootMachine(config);
    const bytes = encodeSnapshot(m.saveState());
    expect(() => decodeSnapshot(bytes.subarray(0, 100))).toThrow(SnapshotFormatError);
    expect(() => decodeSnapshot(bytes.subarray(0, bytes.length - 10))).toThrow(/truncated/);
    const bad = bytes.slice();
    bad[0] = 0x58;
    expect(() => decodeSnapshot(bad)).toThrow(/magic/);
    // A flipped bit in the middle of guest RAM (a byte section) is caught by that section's CRC.
    const flipped = bytes.slice();
    flipped[bytes.length >> 1]! ^= 0x10;
    expect(() => decodeSnapshot(flipped)).toThrow(/CRC mismatch in section \d+/);
    const other = createBootMachine({ ...config, memBytes: 32 * MiB });
    expect(() => other.restoreState(decodeSnapshot(bytes))).toThrow(StateError);
    expect(() => other.restoreState(decodeSnapshot(bytes))).toThrow(/memBytes/);
    m.close();
    other.close();
  });
});
