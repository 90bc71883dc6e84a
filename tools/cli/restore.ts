/**
 * Builds a machine of the shape recorded in a `--snapshot-on-exit` file,
 * restores the saved state into it and holds it paused under a debug session:
 * what `firmament tui --restore FILE` opens (a failing test's snapshot, say).
 */
import { basename } from 'node:path';
import { createBootMachine } from '../../vmm/boot.js';
import { parseFault } from '../../machine/platform/faults.js';
import { restoreGuestMachine } from '../../vmm/run-guests.js';
import { StateError } from '../../machine/state.js';
import { DebugSession } from '../../machine/debug/session.js';
import type { PcMachine } from '../../machine/platform/pc.js';
import type { InspectHooks } from '../../machine/inspect/snapshot.js';
import { readMachineSnapshot } from './snapshot-file.js';
import { guestHooks } from './guest-hooks.js';

export interface RestoredMachine {
  machine: PcMachine;
  session: DebugSession;
  label: string;
  initialCpu: number;
  initialConsole(): string;
  close(): Promise<void>;
}

export function restoreMachine(file: string): RestoredMachine {
  const { shape, machine: state, vms } = readMachineSnapshot(file);
  let machine: PcMachine;
  let hooks: InspectHooks = {};
  let release = (): void => {};
  let what: string;
  if (shape.command === 'run') {
    if (!vms?.[0]) throw new StateError(file, 'vms', 'a run snapshot holds its VMs; this file has none');
    const g = restoreGuestMachine(vms[0], { pcpus: shape.pcpus, pace: 'realtime' });
    machine = g.machine;
    hooks = guestHooks(g.machine, g.hypervisor);
    release = () => g.hypervisor.close();
    what = `guest ${shape.guests.map((x) => basename(x.path)).join(', ')}`;
  } else if (vms && vms.length > 0) {
    // A boot that failed after the handoff: its VMs, each where it stopped, on a machine of their own.
    const g = restoreGuestMachine(vms, { pcpus: shape.cpus, pace: 'realtime' });
    machine = g.machine;
    hooks = guestHooks(g.machine, g.hypervisor);
    release = () => g.hypervisor.close();
    what = `firmware boot after the handoff: VM${vms.length > 1 ? 's' : ''} ${g.vms.map((v) => v.name).join(', ')}`;
  } else {
    // Fault specs were checked when the machine first ran; a bad one here means a hand-edited file.
    machine = createBootMachine({ memBytes: shape.memBytes, cpus: shape.cpus, faults: shape.faults.map(parseFault), seed: shape.seed, pace: 'realtime' });
    what = `firmware boot, ${shape.memBytes >> 20} MiB, ${shape.cpus} CPU${shape.cpus > 1 ? 's' : ''}${shape.handedOff ? ', after the handoff' : ''}`;
  }
  try {
    if (shape.command === 'boot' && !vms?.length) {
      if (!state) throw new StateError(file, 'machine', 'a boot snapshot holds the machine record; this file has none');
      machine.restoreState(state);
    }
  } catch (e) {
    release();
    machine.close();
    throw e;
  }
  const label = `${what}, restored from ${basename(file)}`;
  const session = new DebugSession(machine, { label, hooks });
  session.debugger.pause();
  // Paused until the user continues; the run loop sleeps meanwhile (no busy wait).
  const finished = machine.run().then(() => undefined);
  return {
    machine,
    session,
    label,
    initialCpu: shape.command === 'run' || vms?.length ? machine.cpus.length : 0,
    initialConsole: () => hooks.vmConsoles?.()[0]?.id ?? 'com1',
    close: async () => {
      if (!machine.exit) machine.stop('closed by the user');
      if (machine.paused) machine.resume();
      await finished;
      session.close();
      release();
      machine.close();
    },
  };
}
