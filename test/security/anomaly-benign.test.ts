import { describe, expect, it } from 'vitest';
import { buildImages } from '../../tools/build-images.mjs';
import { createGuestMachine } from '../../vmm/run-guests.js';
import { SecurityService } from '../../hypervisor/security/security-service.js';
import { parseProfile, profileDocument, type BehaviourProfile } from '../../hypervisor/security/profile.js';
import type { Anomaly } from '../../hypervisor/security/anomaly.js';
import { feedTraffic } from './support/gateway-traffic.js';

const MiB = 1024 * 1024;
const LEARN_MS = 5000;
const WATCH_NS = 60e9;

interface Case {
  guest: string;
  cmdline?: string;
  vcpus?: number;
  traffic?: boolean;
}

/** Every benign guest in guests/ (hostile and gateway-hostile misbehave on purpose); the long-running ones run the whole 60 s. */
const CASES: Case[] = [
  { guest: 'hello' },
  { guest: 'paging' },
  { guest: 'timer' },
  { guest: 'timer', cmdline: 'idle=65000' },
  { guest: 'mwait' },
  { guest: 'smp', vcpus: 2 },
  { guest: 'dirtier' },
  { guest: 'compute' },
  { guest: 'scan' },
  { guest: 'crash' },
  { guest: 'clone' },
  { guest: 'gateway', traffic: true },
];

async function runGuest(c: Case, path: string, mode: { learn: true } | { profile: BehaviourProfile }): Promise<{ profile?: BehaviourProfile; anomalies: Anomaly[]; endMs: number; serial: string }> {
  const g = createGuestMachine([{ path, memBytes: 64 * MiB, vcpus: c.vcpus ?? 1, ...(c.cmdline ? { cmdline: c.cmdline } : {}) }], { pcpus: c.vcpus ?? 1, pace: 'virtual' });
  const vm = g.vms[0]!;
  const security = new SecurityService(g.hypervisor);
  const anomalies: Anomaly[] = [];
  security.onAnomaly((a) => anomalies.push(a));
  if (c.traffic) feedTraffic(vm);
  try {
    let learned: Promise<BehaviourProfile> | undefined;
    if ('learn' in mode) {
      learned = security.learn(vm.name, LEARN_MS);
      void learned.then(() => g.machine.stop('learned'));
    } else {
      security.setProfile(vm.name, mode.profile);
      security.observe(vm).addSink({ bucket: (_v, b) => void (b.endNs >= WATCH_NS && g.machine.stop('watched 60 s')), firstTouch: () => {} });
    }
    await g.machine.run({ timeoutMs: 600_000 });
    const profile = learned ? await learned : undefined;
    return { ...(profile ? { profile } : {}), anomalies, endMs: vm.clock.nowNs() / 1e6, serial: vm.serial };
  } finally {
    security.close();
    g.hypervisor.close();
    g.machine.close();
  }
}

describe('benign guests raise no anomaly over 60 s of guest time', () => {
  for (const c of CASES) {
    it(`${c.guest}${c.cmdline ? ` ${c.cmdline}` : ''}`, async () => {
      const path = (await buildImages({ quiet: true })).guests[c.guest]!;
      const first = await runGuest(c, path, { learn: true });
      // The profile goes through its JSON form, as `profile learn` and `profile-set` carry it.
      const profile = parseProfile(JSON.parse(JSON.stringify(profileDocument(first.profile!))), `${c.guest} profile`);
      expect(profile.sets.codePages!.size).toBeGreaterThan(0);
      const second = await runGuest(c, path, { profile });
      expect(second.anomalies.map((a) => a.description)).toEqual([]);
      // A long-running guest was watched for the whole 60 s; the others ran to their end.
      if (first.endMs >= LEARN_MS) expect(second.endMs).toBeGreaterThanOrEqual(WATCH_NS / 1e6);
    }, 600_000);
  }
});
