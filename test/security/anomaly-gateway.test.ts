import { describe, expect, it } from 'vitest';
import { buildImages } from '../../tools/build-images.mjs';
import { createGuestMachine } from '../../vmm/run-guests.js';
import { SecurityService } from '../../hypervisor/security/security-service.js';
import type { Anomaly } from '../../hypervisor/security/anomaly.js';
import type { Vm } from '../../hypervisor/vm.js';
import { feedTraffic, onLines } from './support/gateway-traffic.js';

const MiB = 1024 * 1024;

/**
 * The hostile gateway under the security service, learning its first 1.5 s and held to that
 * profile from then on; `watch` sees its console lines (feedTraffic also drives the field link).
 */
async function runHostileGateway(cmdline: string, watch: (vm: Vm, onLine: (line: string) => void) => void) {
  const images = await buildImages({ quiet: true });
  const g = createGuestMachine([{ path: images.guests['gateway-hostile']!, memBytes: 64 * MiB, vcpus: 1, cmdline }], { pcpus: 1, pace: 'virtual' });
  const vm = g.vms[0]!;
  const security = new SecurityService(g.hypervisor);
  const anomalies: Anomaly[] = [];
  security.onAnomaly((a) => anomalies.push(a));
  let turnMs: number | null = null;
  watch(vm, (line) => {
    if (line.startsWith('gateway: hostile:')) turnMs = vm.clock.nowNs() / 1e6;
  });
  try {
    const learned = security.learn(vm.name, 1500, { apply: true });
    const exit = await g.machine.run({ timeoutMs: 300_000 });
    return { vm, exit, profile: await learned, anomalies, turnMs: turnMs as number | null };
  } finally {
    security.close();
    g.hypervisor.close();
    g.machine.close();
  }
}

const BEHAVIOURS = [
  { n: 0, name: 'scans I/O ports', description: /I\/O port scan/ },
  { n: 1, name: 'probes MSRs', description: /MSR probe/ },
  { n: 2, name: 'executes freshly written code', description: /executes freshly written code/ },
  { n: 3, name: 'floods COM1', description: /COM1 flood/ },
  { n: 4, name: 'dirties memory fast', description: /dirties memory fast/ },
] as const;

describe('the hostile gateway is flagged within 1 s of guest time', () => {
  for (const b of BEHAVIOURS) {
    it(`behaviour ${b.n}: ${b.name}`, async () => {
      // It behaves for 2-5 s: learn its first 1.5 s and hold it to that from then on.
      const { vm, exit, profile, anomalies, turnMs } = await runHostileGateway(`secs=7 seed=${7 + b.n} behaviour=${b.n}`, feedTraffic);
      expect(exit.reason).toBe('debug-exit');
      expect(profile.learned!.toMs).toBeGreaterThanOrEqual(1500);
      expect(vm.serial).toContain(`gateway: hostile: ${b.name}`);
      expect(turnMs).not.toBeNull();
      expect(vm.serial).toMatch(/up [1-9]\d* down [1-9]/);
      // Nothing before it turned.
      for (const a of anomalies) expect(a.atMs, a.description).toBeGreaterThanOrEqual(turnMs!);
      const hit = anomalies.find((a) => b.description.test(a.description));
      expect(hit, anomalies.map((a) => a.description).join('\n')).toBeDefined();
      expect(hit!.atMs - turnMs!).toBeLessThanOrEqual(1000);
      expect(hit!.vm).toBe('gateway-hostile');
      expect(hit!.rip).toMatch(/^0x[0-9a-f]+$/);
      // One per episode: the behaviour goes on for seconds, its anomaly is raised once.
      expect(anomalies.filter((a) => a.behaviour === hit!.behaviour)).toHaveLength(1);
    }, 300_000);
  }
});

describe('the drop rule: a steady behaviour that stops is flagged', () => {
  it('behaviour 5: the gateway stops its telemetry, and COM2 falling silent is one anomaly within a window of the turn', async () => {
    // No field traffic: COM2 carries the telemetry frames alone (forwarded frames would keep it busy).
    const { vm, exit, profile, anomalies, turnMs } = await runHostileGateway('secs=7 seed=12 behaviour=5', onLines);
    expect(exit.reason).toBe('debug-exit');
    // Telemetry every 250 ms and a status line every second: both links get a floor.
    expect(profile.floors).toEqual({ 'serial.com1': 1, 'serial.com2': 1 });
    expect(vm.serial).toContain('gateway: hostile: stops its telemetry');
    expect(turnMs).not.toBeNull();
    for (const a of anomalies) expect(a.atMs, a.description).toBeGreaterThanOrEqual(turnMs!);
    // COM1's status lines go on: only COM2 fell silent, once for the whole silence (2-5 s of it).
    // (The gateway ends through isa-debug-exit at 0xf4, a port it had not touched before: that one is expected.)
    const seen = anomalies.filter((a) => a.description !== 'I/O ports outside the profile: 0xf4');
    expect(seen.map((a) => a.description)).toEqual([expect.stringMatching(/^COM2 output stopped: 0 bytes in \d+ ms, the profile expects at least 1$/)]);
    const drop = seen[0]!;
    expect(drop).toMatchObject({ vm: 'gateway-hostile', behaviour: 'rate-drop', metric: 'serial.com2', observed: 0, expected: 1, severity: 'medium' });
    expect(drop.episode.events).toBeGreaterThan(1);
    // Seen once a whole window (1 s) has passed without a frame: the last frame came at the turn or before it.
    expect(drop.atMs - turnMs!).toBeLessThanOrEqual(1000 + 2 * profile.bucketMs);
  }, 300_000);
});
