import { describe, expect, it } from 'vitest';
import { buildImages } from '../../tools/build-images.mjs';
import { createGuestMachine } from '../../vmm/run-guests.js';
import { SecurityService } from '../../hypervisor/security/security-service.js';
import type { Anomaly } from '../../hypervisor/security/anomaly.js';
import { feedTraffic } from './support/gateway-traffic.js';

const MiB = 1024 * 1024;

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
      const images = await buildImages({ quiet: true });
      const seed = 7 + b.n;
      const g = createGuestMachine([{ path: images.guests['gateway-hostile']!, memBytes: 64 * MiB, vcpus: 1, cmdline: `secs=7 seed=${seed} behaviour=${b.n}` }], { pcpus: 1, pace: 'virtual' });
      const vm = g.vms[0]!;
      const security = new SecurityService(g.hypervisor);
      const anomalies: Anomaly[] = [];
      security.onAnomaly((a) => anomalies.push(a));
      let turnMs: number | null = null;
      feedTraffic(vm, (line) => {
        if (line.startsWith('gateway: hostile:')) turnMs = vm.clock.nowNs() / 1e6;
      });
      try {
        // It behaves for 2-5 s: learn its first 1.5 s and hold it to that from then on.
        const learned = security.learn(vm.name, 1500, { apply: true });
        const exit = await g.machine.run({ timeoutMs: 300_000 });
        expect(exit.reason).toBe('debug-exit');
        const profile = await learned;
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
      } finally {
        security.close();
        g.hypervisor.close();
        g.machine.close();
      }
    }, 300_000);
  }
});
