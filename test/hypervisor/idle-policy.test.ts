/**
 * Adaptive vCPU idling and fair scheduling, checked on the workload guests in
 * the machine's virtual time (deterministic): which idle state the controller
 * picks per vCPU and phase, and that a spinning VM cannot starve a worker.
 */
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { DebugSession } from '../../machine/debug/session.js';
import { guestHooks } from '../../tools/cli/guest-hooks.js';
import { vcpusPane } from '../../tui/panes/vcpus-pane.js';
import type { VcpusView } from '../../machine/inspect/vcpus-view.js';
import type { IdleStatsReport } from '../../hypervisor/scheduling/idle-stats.js';
import { buildImages } from '../../tools/build-images.mjs';
import { createGuestMachine } from '../../vmm/run-guests.js';
import { IDLE_WORKLOADS, runIdleWorkload, type IdleRun } from '../../bench/idle-policy.js';
import { IdleController, IdleHistory, SWITCH_NS, parseIdlePolicy } from '../../hypervisor/scheduling/idle-controller.js';

const guests = async (): Promise<Record<string, string>> => (await buildImages({ quiet: true })).guests;
const workload = (guest: string) => IDLE_WORKLOADS.find((w) => w.guest === guest)!;
const total = (r: IdleRun, k: 'native' | 'emulated'): number => r.vcpus.reduce((n, v) => n + v.entries[k], 0);

describe('idle controller', () => {
  it('holds the pCPU when nobody waits, and weighs predicted idle against two switches when someone does', () => {
    const c = new IdleController('adaptive');
    const h = new IdleHistory();
    expect(c.onEntry(h, 'hlt', 0).mode).toBe('native');
    expect(c.onEntry(h, 'hlt', 1)).toMatchObject({ mode: 'emulated', predictedNs: null });
    h.noteIdle('hlt', SWITCH_NS);
    expect(c.onEntry(h, 'hlt', 2).mode).toBe('native');
    for (let i = 0; i < 8; i++) h.noteIdle('hlt', 200_000);
    expect(c.onEntry(h, 'hlt', 2).mode).toBe('emulated');
    // Per instruction: MWAIT has its own history.
    expect(c.onEntry(h, 'mwait', 2).predictedNs).toBeNull();
    // An idle period that outlived a short prediction is expected to last as long again: give the pCPU up.
    const short = new IdleHistory();
    short.noteIdle('hlt', 1000);
    expect(c.reconsider(short, 'hlt', 500, 1)).toBeNull();
    expect(c.reconsider(short, 'hlt', 50_000, 1)?.mode).toBe('emulated');
    expect(new IdleController('native').reconsider(short, 'hlt', 50_000, 3)).toBeNull();
    expect(new IdleController('emulated').onEntry(h, 'hlt', 0).mode).toBe('emulated');
  });

  it('parses --idle-policy and names the choices on a bad one', () => {
    expect(parseIdlePolicy(undefined)).toBe('adaptive');
    expect(parseIdlePolicy('native')).toBe('native');
    expect(() => parseIdlePolicy('fast')).toThrow(/--idle-policy fast: expected native, emulated or adaptive \(or haltpoll/);
  });
});

describe('idle policies on the workload guests', () => {
  it('IPI ping-pong (nobody waits for a pCPU): adaptive idles natively, like the native policy', async () => {
    const g = await guests();
    const w = workload('ipipong');
    const [native, emulated, adaptive] = [await runIdleWorkload(w, g.ipipong!, 'native'), await runIdleWorkload(w, g.ipipong!, 'emulated'), await runIdleWorkload(w, g.ipipong!, 'adaptive')];
    for (const r of [native, emulated, adaptive]) expect(r.serial).toContain('ipipong: cpu 0 work 2000 wakes 2000');
    expect(total(native, 'emulated')).toBe(0);
    expect(total(emulated, 'native')).toBe(0);
    expect(total(adaptive, 'emulated')).toBe(0);
    expect(total(adaptive, 'native')).toBeGreaterThan(2000);
    // Native wake-ups resume at once; emulated ones pay the switch back in.
    expect(adaptive.p99).toBe(0);
    expect(emulated.p50).toBe(SWITCH_NS);
    expect(adaptive.usefulPerSecond).toBeGreaterThan(emulated.usefulPerSecond);
  }, 300_000);

  it('overcommit (6 vCPUs on 2 pCPUs): adaptive gives the pCPU up on the frequent wakers, and keeps within 5% of the best fixed policy', async () => {
    const g = await guests();
    const w = workload('overcommit');
    const runs = [await runIdleWorkload(w, g.overcommit!, 'native'), await runIdleWorkload(w, g.overcommit!, 'emulated'), await runIdleWorkload(w, g.overcommit!, 'adaptive')];
    const [native, emulated, adaptive] = runs as [IdleRun, IdleRun, IdleRun];
    // Wakers are vCPUs 0, 2, 4: 200 us idles while computing vCPUs wait.
    for (const i of [0, 2, 4]) {
      expect(adaptive.vcpus[i]!.entries.emulated).toBeGreaterThan(10 * adaptive.vcpus[i]!.entries.native);
      expect(native.vcpus[i]!.decisions.preempted).toBeGreaterThan(0); // the fair share takes a native waiter's pCPU
    }
    expect(adaptive.usefulPerSecond).toBeGreaterThan(0.95 * Math.max(native.usefulPerSecond, emulated.usefulPerSecond));
  }, 300_000);

  it('phases: adaptive idles natively in the ping-pong phase, gives the pCPU up in the overcommitted one, and beats both fixed policies', async () => {
    const g = await guests();
    const w = workload('phases');
    const [native, emulated, adaptive] = [await runIdleWorkload(w, g.phases!, 'native'), await runIdleWorkload(w, g.phases!, 'emulated'), await runIdleWorkload(w, g.phases!, 'adaptive')];
    const [v0, v1] = [adaptive.vcpus[0]!, adaptive.vcpus[1]!];
    // vCPUs 0 and 1: ~3000 short ping-pong idles (native), then ~250 period waits each with vCPUs 2 and 3 computing (emulated).
    expect(v0.entries.native + v1.entries.native).toBeGreaterThan(2000);
    expect(v0.entries.emulated).toBeGreaterThan(200);
    expect(v1.entries.emulated).toBeGreaterThan(200);
    expect(adaptive.usefulPerSecond).toBeGreaterThan(native.usefulPerSecond);
    expect(adaptive.usefulPerSecond).toBeGreaterThan(emulated.usefulPerSecond);
  }, 300_000);
});

describe('fair scheduling', () => {
  it('a spinning VM cannot starve a worker VM on the same pCPU, whichever comes first', async () => {
    const g = await guests();
    for (const order of [['spin', 'timer'], ['timer', 'spin']] as const) {
      const specs = order.map((n) => ({ path: g[n]!, memBytes: 16 * 1024 * 1024, vcpus: 1, cmdline: n === 'spin' ? 'ms=100' : 'ticks=10' }));
      const { machine, hypervisor, vms } = createGuestMachine(specs, { pcpus: 1, pace: 'virtual' });
      try {
        await machine.run({ timeoutMs: 300_000 });
        const spin = vms.find((v) => v.name === 'spin')!;
        const timer = vms.find((v) => v.name === 'timer')!;
        expect(timer.exit?.reason).toBe('debug-exit');
        expect(spin.exit?.reason).toBe('debug-exit');
        // The worker finishes long before the spinner: it needs a sliver of the pCPU, and gets it at each tick.
        expect(timer.exit!.atNs!).toBeLessThan(spin.exit!.atNs! / 2);
        // Every tick reaches the worker within one turn of the spinner (a quantum), never after many.
        const lat = hypervisor.idleStats(timer.vcpus[0]!)!.wakeLatencyNs;
        expect(lat.count).toBeGreaterThanOrEqual(20); // 10 PIT and 10 LAPIC timer ticks, each waited for in HLT
        expect(lat.max).toBeLessThanOrEqual(2_000_000 + SWITCH_NS);
      } finally {
        hypervisor.close();
        machine.close();
      }
    }
  }, 300_000);
});

describe('idle counters in the CLI, the monitor and the TUI', () => {
  const CLI = new URL('../../tools/firmament.mjs', import.meta.url).pathname;
  const cli = (...args: string[]) => spawnSync('node', [CLI, ...args], { encoding: 'utf8', timeout: 120_000 });

  it('run --json reports each vCPU\'s idle counters under the chosen --idle-policy; a bad policy is a usage error', async () => {
    const g = await guests();
    const r = cli('run', g.ipipong!, '--vcpus', '2', '--cpus', '2', '--clock', 'virtual', '--idle-policy', 'emulated', '--cmdline', 'rounds=50', '--json');
    expect(r.status).toBe(1);
    const doc = JSON.parse(r.stdout) as { guests: { vcpus: { idle: IdleStatsReport }[] }[] };
    const idle = doc.guests[0]!.vcpus[0]!.idle;
    expect(idle.policy).toBe('emulated');
    expect(idle.entries.native).toBe(0);
    expect(idle.entries.emulated).toBeGreaterThanOrEqual(50);
    expect(idle.wakeLatencyNs.count).toBe(idle.entries.emulated);
    expect(idle.switches).toBeGreaterThanOrEqual(50);
    expect(idle.decisions.last?.reason).toBe('policy emulated');
    const bad = cli('run', g.ipipong!, '--idle-policy', 'lazy');
    expect(bad.status).toBe(2);
    expect(bad.stderr).toContain('--idle-policy lazy: expected native, emulated or adaptive');
    expect(bad.stderr).not.toMatch(/\n\s+at /);
  }, 300_000);

  it('the monitor\'s vcpus command and the TUI vCPU pane show them', async () => {
    const g = await guests();
    const { machine, hypervisor } = createGuestMachine([{ path: g.overcommit!, memBytes: 32 * 1024 * 1024, vcpus: 4, cmdline: 'ms=10' }], { pcpus: 2, pace: 'virtual' });
    try {
      await machine.run({ timeoutMs: 120_000 });
      const session = new DebugSession(machine, { label: 'test', hooks: guestHooks(machine, hypervisor) });
      const res = session.handle({ cmd: 'vcpus' }) as { ok: boolean; result: VcpusView };
      expect(res.ok).toBe(true);
      const v0 = res.result.vms[0]!.vcpus[0]!;
      expect(v0.idle?.policy).toBe('adaptive');
      expect(v0.idle!.entries.native + v0.idle!.entries.emulated).toBeGreaterThan(20);
      const pane = vcpusPane.render({ vcpus: res.result, errors: {} } as never, { cpu: -1 } as never, 200);
      expect(pane.lines.join('\n')).toMatch(/idle adaptive: native \d+x .*emulated \d+x .*wake p50 .* p99 .*switches \d+/);
    } finally {
      hypervisor.close();
      machine.close();
    }
  }, 300_000);
});

describe('scheduling state in a VM snapshot', () => {
  it('is saved with the VM, and a malformed record is refused naming the field, leaving the hypervisor as it was', async () => {
    const g = await guests();
    const { machine, hypervisor, vms } = createGuestMachine([{ path: g.phases!, memBytes: 32 * 1024 * 1024, vcpus: 4, cmdline: 'ms=4' }], { pcpus: 2, pace: 'virtual', extraHostBytes: 96 * 1024 * 1024 });
    try {
      machine.timeline.schedule(60_000_000, () => machine.pause());
      const running = machine.run({ timeoutMs: 120_000 });
      while (!machine.paused && !machine.exit) await new Promise((r) => setTimeout(r, 2));
      const image = hypervisor.snapshotVm(vms[0]!);
      machine.stop('snapshot taken');
      await running;
      const sched = image.state['scheduling'] as { version: number; vcpus: { idleKind: string; vruntime: number }[] };
      expect(sched.version).toBe(1);
      expect(sched.vcpus).toHaveLength(4);
      expect(Math.min(...sched.vcpus.map((v) => v.vruntime))).toBe(0); // shares relative to the least-served vCPU
      const bad = structuredClone(image.state) as typeof image.state;
      (bad['scheduling'] as { vcpus: { idleKind: string }[] }).vcpus[1]!.idleKind = 'pause';
      const before = hypervisor.vms.length;
      expect(() => hypervisor.restoreVm(bad, { ranges: image.memory })).toThrow(/scheduling\.vcpus\[1\].*idleKind.*'pause' is not hlt or mwait/);
      expect(hypervisor.vms.length).toBe(before);
      const ok = hypervisor.restoreVm(image.state, { ranges: image.memory }, { name: 'copy' });
      expect(hypervisor.idleStats(ok.vcpus[0]!)?.policy).toBe('adaptive');
    } finally {
      hypervisor.close();
      machine.close();
    }
  }, 300_000);
});
