/** A firmware machine under the debugger for inspection tests; always torn down so no run loop outlives its engines. */
import { createBootMachine } from '../../vmm/boot.js';
import type { PcMachine } from '../../machine/platform/pc.js';
import { Debugger, type StopInfo } from '../../machine/debug/debugger.js';

export interface Rig {
  m: PcMachine;
  d: Debugger;
  run: Promise<unknown>;
  /** The next stop of the given reasons (default: anything but pause and step). */
  nextStop(reasons?: StopInfo['reason'][]): Promise<StopInfo>;
  close(): Promise<void>;
}

export function firmwareRig(opts: { paused?: boolean; cpus?: number } = {}): Rig {
  const m = createBootMachine({ memBytes: 64 * 1024 * 1024, cpus: opts.cpus ?? 1, faults: [], pace: 'virtual' });
  const d = new Debugger(m);
  if (opts.paused) m.pause();
  const run = m.run({ timeoutMs: 60_000 });
  return {
    m,
    d,
    run,
    nextStop: (reasons) =>
      new Promise((resolve) => {
        const off = d.onStop((s) => {
          if (reasons ? !reasons.includes(s.reason) : s.reason === 'pause' || s.reason === 'step') return;
          off();
          resolve(s);
        });
      }),
    close: async () => {
      d.detach();
      if (!m.exit) m.stop('test done');
      if (m.paused) m.resume();
      await run;
      m.close();
    },
  };
}
