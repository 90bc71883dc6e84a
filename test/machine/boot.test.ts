import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { boot, bootSucceeded, type BootReport } from '../../vmm/boot.js';
import { parseFault } from '../../machine/platform/faults.js';
import { buildImages } from '../../tools/build-images.mjs';

const MiB = 1024 * 1024;
const expectedSerial = readFileSync(join(import.meta.dirname, 'expected/default-boot.serial.txt'), 'utf8');
const run = (faults: string[] = []): Promise<BootReport> => boot({ memBytes: 64 * MiB, cpus: 1, faults: faults.map(parseFault), pace: 'virtual', timeoutMs: 60_000 });

/** The documented POST progression of a clean boot (firmware/post-codes.json). */
const CLEAN_SEQUENCE = ['0x01', '0x02', '0x03', '0x04', '0x05', '0x10', '0x18', '0x20', '0x30', '0x31', '0x32', '0x33', '0x40', '0x41', '0x48', '0x50', '0x51', '0x5E', '0x5F'];

describe('default machine boot', () => {
  let first: BootReport;
  beforeAll(async () => {
    await buildImages({ quiet: true });
    first = await run();
  });

  it('runs the full POST code sequence and hands off to the next stage', () => {
    expect(first.postCodes.map((p) => p.hex)).toEqual(CLEAN_SEQUENCE);
    expect(first.postErrors).toEqual([]);
    expect(first.exit).toMatchObject({ reason: 'halted', code: 0, detail: 'handed off to the hypervisor; no guests to run' });
    expect(bootSucceeded(first)).toBe(true);
  });

  it('prints the documented POST log on COM1', () => {
    expect(first.serial).toBe(expectedSerial);
    expect(first.serial).toContain('firmament-os 0.1: boot-info v1 at 0x8000, 64 MiB');
  });

  it('reports stages in order and the memory map handed to the next stage', () => {
    expect(first.stages.map((s) => s.name)).toEqual(['reset', 'real-mode', 'protected-mode', 'long-mode-init', 'post', 'containers', 'hypervisor']);
    for (const s of first.stages) expect(s.endMs).toBeGreaterThanOrEqual(s.startMs);
    const usable = first.memoryMap.filter((e) => e.type === 1);
    expect(usable.some((e) => e.base === '0x100000')).toBe(true);
    expect(first.memoryMap.every((e) => e.type !== 5)).toBe(true);
  });

  it('is deterministic: a second boot gives identical POST codes and serial output', async () => {
    const second = await run();
    expect(second.postCodes).toEqual(first.postCodes);
    expect(second.serial).toBe(first.serial);
  });
});

describe('fault injection', () => {
  const cases: [string, string, RegExp][] = [
    ['ram:0x800000+0x1000', '0xE2', /\[POST 0xE2\] memory test FAILED: bad range \[mem 0x0000000000800000-0x0000000000800fff\]/],
    ['cmos-checksum', '0xE5', /\[POST 0xE5\] CMOS checksum bad: stored 0x[0-9a-f]+ computed 0x0184, using defaults/],
    ['pit-stuck', '0xE3', /\[POST 0xE3\] PIT stuck: channel 0 counter stays at 0x[0-9a-f]+, skipping timer interrupt test/],
  ];
  for (const [fault, code, line] of cases) {
    it(`--fault ${fault} gives POST error ${code}, a log line, and the boot still completes`, async () => {
      const r = await run([fault]);
      expect(r.postErrors.map((p) => p.hex)).toEqual([code]);
      expect(r.serial).toMatch(line);
      expect(r.handoff).not.toBeNull();
      expect(bootSucceeded(r)).toBe(true);
      expect(bootSucceeded(r, true)).toBe(false);
    });
  }

  it('--fault ram fences the bad range in the handed-off memory map', async () => {
    const r = await run(['ram:0x800000+0x1000']);
    expect(r.memoryMap).toContainEqual({ base: '0x800000', length: '0x1000', type: 5, typeName: 'bad' });
  });

  it('--fault uart-dead moves the log to debugcon and reports 0xE0', async () => {
    const r = await run(['uart-dead']);
    expect(r.postErrors.map((p) => p.hex)).toEqual(['0xE0']);
    expect(r.serial).toBe('');
    expect(r.debugcon).toMatch(/\[POST 0xE0\] UART dead: COM1 scratch register test fail/);
    expect(r.handoff).not.toBeNull();
    expect(r.containers.find((c) => c.name === 'uart')?.status).toBe('fail');
  });

  it('rejects malformed fault specs with a message naming the problem', () => {
    expect(() => parseFault('ram:0x200000')).toThrow(/missing '\+<len>'/);
    expect(() => parseFault('ram:0x200001+0x1000')).toThrow(/4 KiB aligned/);
    expect(() => parseFault('disk-on-fire')).toThrow(/unknown --fault 'disk-on-fire'/);
  });
});
