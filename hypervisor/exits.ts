/** VM exit reasons, counted per VM and per vCPU and shown by the CLI and TUI. */
export const EXIT_REASONS = ['io', 'mmio', 'ept-violation', 'hlt', 'mwait', 'cpuid', 'msr', 'vmcall', 'exception', 'interrupt', 'triple-fault'] as const;
export type ExitReason = (typeof EXIT_REASONS)[number];
export type ExitCounts = Record<ExitReason, number>;

export const emptyExitCounts = (): ExitCounts => Object.fromEntries(EXIT_REASONS.map((r) => [r, 0])) as ExitCounts;

/** Folds a vCPU's CPU-layer counters into exit reasons. */
export function exitsFromCounters(counters: Record<string, number>, io: number, mmio: number): ExitCounts {
  const e = emptyExitCounts();
  e.io = io;
  e.mmio = mmio;
  for (const [k, v] of Object.entries(counters)) {
    if (k === 'hlt') e.hlt += v;
    else if (k === 'mwait' || k === 'monitor') e.mwait += v;
    else if (k === 'cpuid') e.cpuid += v;
    else if (k === 'rdmsr' || k === 'wrmsr') e.msr += v;
    else if (k === 'vmcall') e.vmcall += v;
    else if (k === 'ept-violation') e['ept-violation'] += v;
    else if (k.startsWith('exception:')) e.exception += v;
    else if (k.startsWith('irq:')) e.interrupt += v;
    else if (k === 'triple-fault') e['triple-fault'] += v;
  }
  return e;
}
