/**
 * A firmware container's own IN/OUT (no system call) reach exactly the ports
 * its image was granted: the lightweight OS opens them in the TSS I/O
 * permission bitmap while the container runs, and the CPU layer enforces the
 * bitmap. Before, Unicorn ran every ring-3 IN/OUT: this container's POST code
 * showed up in the POST log, it masked both PICs (so its time limit could not
 * fire) and ended the whole machine through isa-debug-exit.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { boot, type BootOptions } from '../../vmm/boot.js';
import { buildImages } from '../../tools/build-images.mjs';
import { buildOciLayout } from '../../tools/oci-layout.mjs';

const MiB = 1024 * 1024;
const base: BootOptions = { memBytes: 64 * MiB, cpus: 1, faults: [], pace: 'virtual', timeoutMs: 120_000 };

beforeAll(async () => {
  await buildImages({ quiet: true });
}, 180_000);

describe('a hostile firmware container doing its own port I/O', () => {
  it('reads its granted CMOS ports, is killed with #GP on the POST port, and the machine boots on', async () => {
    const tmp = mkdtempSync(path.join(tmpdir(), 'fm-ioport-'));
    const layout = await buildOciLayout({ quiet: true, layoutDir: path.join(tmp, 'layout'), containers: ['testonly-ioport', 'timer', 'uart'] });
    const r = await boot({ ...base, containers: { kind: 'layout', dir: layout.layoutDir } });
    const hostile = r.containers.find((c) => c.name === 'testonly-ioport')!;
    // Its granted ports answered (the log line is written after two direct IN and two OUT on 0x70-0x71).
    expect(r.serial).toContain('testonly-ioport: granted ports 0x70-0x71 answer our own IN/OUT: CMOS[0x0e] reads back the same');
    expect(r.serial).toContain('testonly-ioport: now writing POST code 0xee to port 0x80');
    // The POST port is not granted: #GP(0) at the OUT, the OS kills it.
    expect(hostile.status).toBe('fail');
    expect(hostile.findings.map((f) => f.text)).toEqual([expect.stringMatching(/^killed: exception 13 \(#GP[^)]*\), error 0x0, RIP 0x4[0-9a-f]+$/)]);
    expect(r.serial).not.toContain('isolation is broken');
    expect(r.postCodes.map((p) => p.code)).not.toContain(0xee);
    // The PICs were not masked and the machine was not ended: the timer container still gets its
    // IRQ0 ticks, and the OS hands off as usual.
    expect(r.containers.find((c) => c.name === 'timer')!.status).toBe('pass');
    expect(r.containers.find((c) => c.name === 'uart')!.status).toBe('pass');
    expect(r.handoff).not.toBeNull();
    expect(r.exit.reason).not.toBe('debug-exit');
  });
});
