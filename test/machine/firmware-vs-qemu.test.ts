import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { boot, DEFAULT_ROM, TEST_PAYLOAD } from '../../vmm/boot.js';
import { buildImages } from '../../tools/build-images.mjs';

const hasQemu = spawnSync('qemu-system-x86_64', ['--version'], { stdio: 'ignore' }).status === 0;

/**
 * QEMU is the reference machine. Without SeaBIOS it leaves the CMOS checksum
 * bytes at zero, while our CMOS (like a real board's NVRAM) holds a valid one;
 * the lines that depend on that single difference are the only ones excluded.
 */
const CMOS_DEPENDENT = /CMOS|POST flags|POST error|boot-info: v1 at/;

describe.skipIf(!hasQemu)('firmware on our machine vs QEMU (requires qemu-system-x86)', () => {
  it('prints the same COM1 log, line for line, apart from the CMOS checksum', async () => {
    await buildImages({ quiet: true });
    const ours = await boot({ memBytes: 64 * 1024 * 1024, cpus: 1, faults: [], pace: 'virtual', timeoutMs: 60_000, nextStagePath: TEST_PAYLOAD });
    const q = spawnSync('qemu-system-x86_64', ['-M', 'pc', '-bios', DEFAULT_ROM, '-fw_cfg', `name=opt/firmament/next-stage,file=${TEST_PAYLOAD}`, '-serial', 'stdio', '-display', 'none', '-device', 'isa-debug-exit,iobase=0xf4,iosize=0x04', '-no-reboot', '-m', '64'], { encoding: 'latin1', timeout: 60_000 });
    expect(q.status).toBe(1);
    expect(ours.exit).toMatchObject({ reason: 'debug-exit', code: q.status });
    const keep = (s: string): string[] => s.split('\r\n').filter((l) => !CMOS_DEPENDENT.test(l));
    expect(keep(ours.serial)).toEqual(keep(q.stdout));
    expect(keep(ours.serial).length).toBeGreaterThan(25);
  });
});
