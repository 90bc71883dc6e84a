/**
 * VMs halted with no timer armed cost the host nothing: no timer is left on the machine's
 * timeline (the firmware-less host's own PIT no longer ticks for nobody), a plain run ends as
 * "halted" instead of idling forever, and a machine kept alive for a debugger sleeps until its
 * timeout without waking.
 */
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { createGuestMachine } from '../../vmm/run-guests.js';

const TIMER = path.resolve(import.meta.dirname, '../../images/build/guests/timer.elf');
const halted = (n: number) => Array.from({ length: n }, () => ({ path: TIMER, memBytes: 16 << 20, vcpus: 1, cmdline: 'halt=1' }));

describe('halted VMs with no timer', () => {
  it('a run whose only guest halts waiting for nothing ends as halted, with no timer left', async () => {
    const { machine, hypervisor, vms } = createGuestMachine(halted(1), { pcpus: 1, pace: 'realtime' });
    const exit = await machine.run({ timeoutMs: 60_000 });
    expect(exit.reason).toBe('halted');
    expect(vms[0]!.serial).toContain('timer: halt mode, no timer armed');
    expect(machine.timeline.nextDeadline()).toBe(Infinity);
    hypervisor.close();
    machine.close();
  });

  it('8 halted VMs in a machine kept alive (a debugger attached) arm no host timer and sleep until the timeout', async () => {
    const { machine, hypervisor, vms } = createGuestMachine(halted(8), { pcpus: 1, pace: 'realtime' });
    machine.interactive = true;
    // Scheduling rounds once every VM has printed its last line and halted.
    let idleRounds = 0;
    const step = machine.step.bind(machine);
    machine.step = (maxNs?: number) => {
      if (vms.every((vm) => vm.serial.includes('timer: halt mode, no timer armed'))) idleRounds++;
      return step(maxNs);
    };
    const exit = await machine.run({ timeoutMs: 1500 });
    expect(exit.reason).toBe('timeout');
    for (const vm of vms) expect(vm.serial).toContain('timer: halt mode, no timer armed');
    expect(machine.timeline.nextDeadline()).toBe(Infinity);
    // Nothing is scheduled: one round finds every CPU halted, then the loop sleeps until the timeout.
    expect(idleRounds).toBeGreaterThan(0);
    expect(idleRounds).toBeLessThanOrEqual(3);
    hypervisor.close();
    machine.close();
  }, 60_000);
});
