/**
 * Starts the machine that `tui` and `inspect` look at: the whole boot path of
 * `firmament boot` (firmware, OS and containers, handoff, hypervisor and
 * --guest guests), or a Multiboot kernel under the hypervisor (`--kernel`, as
 * `firmament run`). Breakpoints, watches and --paused are in place before the
 * first instruction runs. The machine's engines stay open after it exits, so
 * its final state can still be inspected; close() releases them.
 */
import { basename } from 'node:path';
import { boot, machineMemoryFor, type BootGuest } from '../../vmm/boot.js';
import type { PcMachine } from '../../machine/platform/pc.js';
import { parseSize } from '../../machine/platform/faults.js';
import { createGuestMachine } from '../../vmm/run-guests.js';
import type { InspectHooks } from '../../machine/inspect/snapshot.js';
import { DebugSession } from '../../machine/debug/session.js';
import { parseBreakpointSpec, parseWatchSpec, type BreakpointSpec, type WatchSpec } from '../../machine/debug/specs.js';
import { machineOptions, MACHINE_OPTION_SPEC, MAX_GUEST_RAM, MAX_MACHINE_RAM, parseCount, parseMemSize, UsageError, type MachineOptions } from './args.js';
import { ensureImages } from './images.js';
import { guestHooks } from './guest-hooks.js';
import { bootHooks } from './boot-hooks.js';

/** Options shared by the commands that start a machine to inspect it. */
export const LAUNCH_OPTION_SPEC = {
  ...MACHINE_OPTION_SPEC,
  guest: { type: 'string', multiple: true },
  'guest-mem': { type: 'string' },
  'guest-vcpus': { type: 'string' },
  registry: { type: 'string' },
  kernel: { type: 'string' },
  vcpus: { type: 'string' },
  cmdline: { type: 'string' },
  paused: { type: 'boolean' },
  break: { type: 'string', multiple: true },
  watch: { type: 'string', multiple: true },
} as const;

export const LAUNCH_HELP = `  Machine: the options of 'firmament boot' (--mem, --cpus, --fault, --seed, --clock, --timeout,
  --guest, --guest-mem, --guest-vcpus, --registry), or
  --kernel ELF        run a Multiboot kernel under the hypervisor instead (as 'firmament run')
  --vcpus N           with --kernel: virtual CPUs (default 1)
  --cmdline S         with --kernel: Multiboot command line
  --paused            start paused at the first instruction
  --break SPEC        breakpoint, repeatable: 0xADDR (linear), phys:0xADDR, post:0x33 or post:MEMTEST_PASS
  --watch SPEC        watch a physical range for writes, repeatable: 0xADDR+LEN`;

export type LaunchValues = Record<string, string | boolean | (string | boolean)[] | undefined>;

export interface LaunchedMachine {
  machine: PcMachine;
  session: DebugSession;
  hooks: InspectHooks;
  label: string;
  options: MachineOptions;
  /** Settles when the machine has exited (it keeps its engines until close()). */
  finished: Promise<void>;
  /** The CPU to look at first: the first guest vCPU when a kernel runs. */
  initialCpu: number;
  /** The console to show first: the guest's for a kernel. */
  initialConsole(): string;
  /** Ends the machine if it still runs, waits for it, and releases everything. */
  close(): Promise<void>;
}

const list = (v: LaunchValues[string]): string[] => (Array.isArray(v) ? v.map(String) : v === undefined ? [] : [String(v)]);
const str = (v: LaunchValues[string]): string | undefined => (typeof v === 'string' ? v : undefined);

interface DebugSetup {
  breaks: BreakpointSpec[];
  watches: WatchSpec[];
  paused: boolean;
}

function debugSetup(values: LaunchValues): DebugSetup {
  try {
    return { breaks: list(values['break']).map(parseBreakpointSpec), watches: list(values['watch']).map(parseWatchSpec), paused: values['paused'] === true };
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

function applySetup(session: DebugSession, s: DebugSetup): void {
  for (const b of s.breaks) session.debugger.addBreakpoint(b);
  for (const w of s.watches) session.debugger.addWatch(w);
  if (s.paused) session.debugger.pause();
}

/** Keeps engines open past their owner's close() (boot() closes them as it returns), until we release them. */
function deferClose(owner: { close(): void }): () => void {
  const real = owner.close.bind(owner);
  owner.close = () => {};
  return real;
}

export async function launchMachine(values: LaunchValues): Promise<LaunchedMachine> {
  const o = machineOptions(values);
  const setup = debugSetup(values);
  await ensureImages(true);
  const kernel = str(values['kernel']);
  return kernel ? launchKernel(kernel, values, o, setup) : launchBoot(values, o, setup);
}

function launchKernel(kernel: string, values: LaunchValues, o: MachineOptions, setup: DebugSetup): LaunchedMachine {
  const vcpus = parseCount(str(values['vcpus']), '--vcpus', 1);
  const cmdline = str(values['cmdline']);
  const memText = str(values['mem']);
  const memBytes = memText !== undefined ? parseMemSize(memText, '--mem', MAX_GUEST_RAM) : 64 * 1024 * 1024;
  const g = createGuestMachine([{ path: kernel, memBytes, vcpus, ...(cmdline !== undefined ? { cmdline } : {}) }], { pcpus: o.cpus, pace: o.pace, timerSlackMs: o.timerSlackMs });
  const hooks = guestHooks(g.machine, g.hypervisor);
  const label = `guest ${basename(kernel)}`;
  const session = new DebugSession(g.machine, { label, hooks });
  applySetup(session, setup);
  const finished = g.machine.run(o.timeoutMs !== undefined ? { timeoutMs: o.timeoutMs } : {}).then(() => undefined);
  return {
    machine: g.machine,
    session,
    hooks,
    label,
    options: o,
    finished,
    initialCpu: g.machine.cpus.length,
    initialConsole: () => hooks.vmConsoles?.()[0]?.id ?? 'com1',
    close: async () => {
      if (!g.machine.exit) g.machine.stop('closed by the user');
      if (g.machine.paused) g.machine.resume();
      await finished;
      session.close();
      g.hypervisor.close();
      g.machine.close();
    },
  };
}

function launchBoot(values: LaunchValues, o: MachineOptions, setup: DebugSetup): Promise<LaunchedMachine> {
  const guestMem = parseMemSize(str(values['guest-mem']) ?? '64M', '--guest-mem', MAX_GUEST_RAM);
  const guestVcpus = parseCount(str(values['guest-vcpus']), '--guest-vcpus', 1);
  const guests: BootGuest[] = list(values['guest']).map((path) => ({ path, memBytes: guestMem, vcpus: guestVcpus }));
  const memBytes = machineMemoryFor(guests, str(values['mem']) !== undefined ? o.memBytes : undefined);
  if (memBytes > MAX_MACHINE_RAM) throw new UsageError(`the guests need ${memBytes >> 20} MiB of machine RAM, more than the ${MAX_MACHINE_RAM >> 20} MiB one machine can have`);
  const registry = str(values['registry']);
  const label = `firmware boot, ${memBytes >> 20} MiB, ${o.cpus} CPU${o.cpus > 1 ? 's' : ''}${guests.length ? `, ${guests.length} guest(s)` : ''}`;
  return new Promise((resolve, reject) => {
    let launched: LaunchedMachine | null = null;
    let hooksForHandoff: ReturnType<typeof bootHooks> | null = null;
    let releaseHypervisor = (): void => {};
    const finished = boot(
      { memBytes, cpus: o.cpus, faults: o.faults, seed: o.seed, pace: o.pace, timerSlackMs: o.timerSlackMs, guests, ...(registry !== undefined ? { containers: { kind: 'registry' as const, url: registry } } : {}), ...(o.timeoutMs !== undefined ? { timeoutMs: o.timeoutMs } : {}) },
      {
        // Runs before the first instruction: the debugger is in place from the reset vector on.
        onMachine: (m) => {
          const release = deferClose(m);
          hooksForHandoff = bootHooks(m);
          const hooks = hooksForHandoff.hooks;
          const session = new DebugSession(m, { label, hooks });
          applySetup(session, setup);
          launched = {
            machine: m,
            session,
            hooks,
            label,
            options: o,
            finished: Promise.resolve(),
            initialCpu: 0,
            initialConsole: () => 'com1',
            close: async () => {
              if (!m.exit) m.stop('closed by the user');
              if (m.paused) m.resume();
              await finished;
              session.close();
              releaseHypervisor();
              release();
            },
          };
        },
        onHandoff: (h, hv) => {
          if (hv) releaseHypervisor = deferClose(hv);
          hooksForHandoff?.onHandoff(h, hv);
        },
      },
    ).then(() => undefined);
    let failed = false;
    finished.catch((e: unknown) => {
      failed = true;
      reject(e as Error);
    });
    // boot() calls onMachine synchronously unless it first pulls containers from a registry.
    const ready = (): void => {
      if (failed) return;
      if (!launched) return void setTimeout(ready, 10);
      launched.finished = finished;
      resolve(launched);
    };
    ready();
  });
}
