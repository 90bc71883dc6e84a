/**
 * The whole path as a CI user sees it through `firmament boot --json`: POST,
 * the lightweight OS running the firmware containers, the handoff, and the
 * hypervisor with guests.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { boot, bootSucceeded, type BootOptions, type BootReport } from '../../vmm/boot.js';
import { parseFault } from '../../machine/platform/faults.js';
import { buildImages } from '../../tools/build-images.mjs';
import { buildOciLayout, corruptLayout } from '../../tools/oci-layout.mjs';
import type { Hypervisor } from '../../hypervisor/hypervisor.js';
import { canRunRegistry, pushContainer, startRegistry } from '../support/registry.js';

const MiB = 1024 * 1024;
const base: BootOptions = { memBytes: 64 * MiB, cpus: 1, faults: [], pace: 'virtual', timeoutMs: 120_000 };
const tmp = mkdtempSync(path.join(tmpdir(), 'fm-pipeline-'));
let images: Awaited<ReturnType<typeof buildImages>>;
let clean: BootReport;

const container = (r: BootReport, name: string) => r.containers.find((c) => c.name === name)!;

beforeAll(async () => {
  images = await buildImages({ quiet: true });
  clean = await boot(base);
}, 180_000);

describe('firmware containers and the handoff', () => {
  it('the default boot runs every container, all pass, and the handoff happens', () => {
    expect(clean.containers.map((c) => [c.name, c.status])).toEqual([
      ['cmos', 'pass'],
      ['fwcfg', 'pass'],
      ['memtest', 'pass'],
      ['timer', 'pass'],
      ['uart', 'pass'],
    ]);
    expect(clean.handoff).toMatchObject({ result: 'pass', counts: { pass: 5, fail: 0, fixed: 0, rejected: 0, timeout: 0 } });
    expect(clean.stages.map((s) => s.name).slice(-2)).toEqual(['containers', 'hypervisor']);
    expect(bootSucceeded(clean, true)).toBe(true);
    // The containers' digests are the layout's manifests.
    for (const c of images.layout.containers) expect(container(clean, c.name).digest).toBe(c.manifestDigest);
  });

  it('the event log measures index.json and every blob, and is reproducible', async () => {
    expect(clean.eventLog!.events).toHaveLength(1 + 3 * 5);
    expect(clean.eventLog!.events[0]).toMatchObject({ kind: 'index', container: null });
    const again = await boot(base);
    expect(again.eventLog).toEqual(clean.eventLog);
    expect(again.containers).toEqual(clean.containers);
  });

  it('--fault ram gives a memtest fail naming the range; the handed-off map fences it; the boot completes', async () => {
    const r = await boot({ ...base, faults: [parseFault('ram:0x3000000+0x1000')] });
    const mt = container(r, 'memtest');
    expect(mt.status).toBe('fail');
    expect(mt.findings.map((f) => f.text).join('\n')).toMatch(/0x0*3000000-0x0*3000fff/);
    expect(r.handoff!.memoryMap).toContainEqual({ base: '0x3000000', length: '0x1000', type: 5, typeName: 'bad' });
    expect(bootSucceeded(r)).toBe(true);
    expect(bootSucceeded(r, true)).toBe(false);
  });

  it('--fault cmos-checksum ends as fixed, and the re-check passes', async () => {
    const r = await boot({ ...base, faults: [parseFault('cmos-checksum')] });
    expect(container(r, 'cmos').status).toBe('fixed');
    expect(r.serial).toMatch(/cmos: re-check passed/);
    expect(r.handoff!.result).toBe('pass');
  });

  it('a corrupted blob is rejected with the digest mismatch; the other containers still run', async () => {
    const bad = await corruptLayout({ layoutDir: images.layout.layoutDir, outDir: path.join(tmp, 'corrupt'), container: 'timer', blob: 'layer' });
    const r = await boot({ ...base, containers: { kind: 'layout', dir: bad.layoutDir } });
    const timer = container(r, 'timer');
    expect(timer.status).toBe('rejected');
    expect(timer.findings.map((f) => f.text).join('\n')).toMatch(/digest|sha256/i);
    expect(r.containers.filter((c) => c.name !== 'timer').every((c) => c.status === 'pass')).toBe(true);
    expect(r.handoff).not.toBeNull();
  });

  it('a container that loops forever times out; one that writes outside its space is killed with a page fault', async () => {
    const layout = await buildOciLayout({ quiet: true, layoutDir: path.join(tmp, 'testonly'), containers: ['cmos', 'testonly-spin', 'testonly-wild', 'uart'] });
    const r = await boot({ ...base, containers: { kind: 'layout', dir: layout.layoutDir } });
    expect(container(r, 'testonly-spin').status).toBe('timeout');
    const wild = container(r, 'testonly-wild');
    expect(wild.status).toBe('fail');
    expect(wild.findings.some((f) => f.source === 'os' && /page fault/i.test(f.text))).toBe(true);
    // The OS was not corrupted: the containers after them still ran and the handoff happened.
    expect(container(r, 'uart').status).toBe('pass');
    expect(r.handoff!.counts.timeout).toBe(1);
  });
});

describe.skipIf(!canRunRegistry)('containers from a real OCI registry on loopback (docker-registry + skopeo)', () => {
  it('boots from the registry with the same containers and the same event log as the local layout', async () => {
    const reg = await startRegistry();
    try {
      for (const c of images.layout.containers) await pushContainer(images.layout.layoutDir, c.name, `docker://127.0.0.1:${reg.port}/firmament/${c.name}:latest`);
      const r = await boot({ ...base, containers: { kind: 'registry', url: `${reg.url}/firmament` } });
      expect(r.machine.containerSource).toBe(`${reg.url}/firmament`);
      expect(r.containers).toEqual(clean.containers);
      expect(r.eventLog).toEqual(clean.eventLog);
    } finally {
      reg.stop();
    }
  }, 120_000);
});

describe('the hypervisor after the handoff', () => {
  it('runs two guests on the full boot path and never hands a fenced RAM range to a guest', async () => {
    let hv: Hypervisor | null = null;
    const guests = [
      { path: images.guests['hello']!, memBytes: 64 * MiB, vcpus: 1 },
      { path: images.guests['compute']!, memBytes: 64 * MiB, vcpus: 1, cmdline: 'rounds=16' },
    ];
    const fence = { base: 0x6000000, length: 0x2000 };
    const r = await boot(
      { ...base, memBytes: 192 * MiB, faults: [parseFault(`ram:0x${fence.base.toString(16)}+0x${fence.length.toString(16)}`)], guests },
      {
        onHandoff: (_h, h) => {
          hv = h;
          // Every frame given to a guest or its tables lies outside the fenced range.
          for (const a of h!.host.allocator.allocations()) expect(a.base + a.length <= fence.base || a.base >= fence.base + fence.length).toBe(true);
        },
      },
    );
    expect(hv).not.toBeNull();
    expect(r.handoff!.memoryMap).toContainEqual({ base: '0x6000000', length: '0x2000', type: 5, typeName: 'bad' });
    expect(r.guests.map((g) => [g.name, g.exit?.reason, g.exit?.code])).toEqual([
      ['hello', 'debug-exit', 1],
      ['compute', 'debug-exit', 1],
    ]);
    expect(r.guests[1]!.serial).toContain('compute: result 0xda89a064');
    expect(r.guests[0]!.exits['io']).toBeGreaterThan(0);
    expect(bootSucceeded(r)).toBe(true);
  }, 180_000);
});
