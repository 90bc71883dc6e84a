/**
 * The monitor's behaviour-profile commands (profile-set, profile-get,
 * profile-learn, anomalies, and the `anomaly` event) for a machine running
 * VMs: the security service beside the hypervisor, and the management side's
 * view of it.
 */
import type { Hypervisor } from '../hypervisor/hypervisor.js';
import { SecurityService } from '../hypervisor/security/security-service.js';
import { parseProfile, profileDocument, type BehaviourProfile } from '../hypervisor/security/profile.js';
import type { SecurityCommands } from '../machine/debug/session.js';
import type { ProfileJson } from '../machine/debug/protocol.js';

const json = (p: BehaviourProfile): ProfileJson => profileDocument(p) as ProfileJson;

export function securityCommands(security: SecurityService): SecurityCommands {
  return {
    set: (args) => {
      const profile = parseProfile(args.profile, 'profile-set: args.profile');
      const vm = security.setProfile(args.vm, profile);
      return { vm: vm.name, rates: Object.keys(profile.thresholds), sets: Object.keys(profile.sets) };
    },
    get: (args) => {
      const vm = security.vm(args.vm);
      const p = security.profile(vm.name);
      return { vm: vm.name, profile: p ? json(p) : null, learning: security.learning(vm.name) };
    },
    learn: async (args) => {
      const vm = security.vm(args.vm);
      const profile = await security.learn(vm.name, args.forMs, args.apply ? { apply: true } : {});
      return { vm: vm.name, profile: json(profile) };
    },
    anomalies: (args) => {
      const all = security.anomalies(args.since ?? 0);
      return { anomalies: args.limit !== undefined ? all.slice(-args.limit) : all };
    },
    onAnomaly: (listener) => security.onAnomaly(listener),
  };
}

/** A security service watching every VM of the hypervisor from now on (before the guests run, so boot is observed). */
export function startSecurity(hypervisor: Hypervisor, profiles: { vm?: string; profile: BehaviourProfile }[] = []): SecurityService {
  const security = new SecurityService(hypervisor);
  for (const p of profiles) security.setProfile(p.vm, p.profile);
  return security;
}
