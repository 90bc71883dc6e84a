/**
 * Consoles view: COM1 and the 0xE9 debug console of the machine, plus a
 * typed slot for per-VM consoles that the hypervisor will provide.
 */
import type { PcMachine } from '../platform/pc.js';

export interface ConsoleView {
  /** Stable id used to switch consoles: 'com1', 'debugcon', later 'vm:<name>:com1'. */
  id: string;
  label: string;
  /** The last `tailBytes` characters. */
  text: string;
  totalBytes: number;
}

export interface ConsoleHooks {
  /** Per-VM consoles (hypervisor guests); none on the bare machine. */
  vmConsoles?: () => readonly ConsoleView[];
}

export interface ConsolesView {
  consoles: ConsoleView[];
}

export function consolesView(machine: PcMachine, opts: { tailBytes?: number; hooks?: ConsoleHooks } = {}): ConsolesView {
  const tail = opts.tailBytes ?? 16 * 1024;
  const debugcon = machine.debugcon.text();
  const cut = (s: string): string => (s.length > tail ? s.slice(-tail) : s);
  return {
    consoles: [
      { id: 'com1', label: 'COM1 (0x3f8)', text: cut(machine.serial), totalBytes: machine.serial.length },
      { id: 'debugcon', label: 'debugcon (0xe9)', text: cut(debugcon), totalBytes: debugcon.length },
      ...(opts.hooks?.vmConsoles?.() ?? []),
    ],
  };
}
