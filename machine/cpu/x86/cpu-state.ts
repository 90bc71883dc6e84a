/**
 * Where QEMU's CPUState of an engine is: the offset of `CPUState *cpu` in
 * uc_struct and how far beyond it the context blob's offsets start (the
 * register bytes of CPUX86State). Unicorn has no API for it; the native
 * helper finds it once per process on a probe engine (fmcpu.c fm_find_cpu,
 * candidates checked in forked children). Native interrupt delivery
 * (native-irq.ts) and the port I/O gate (io-permission.ts) both need it.
 */
import { UnicornEngine } from '../unicorn/engine.js';
import { REG, UC_MODE_32 } from '../unicorn/constants.js';
import { contextLayout } from './context-layout.js';
import { loadUnicorn } from '../unicorn/binding.js';
import { cachedProbe, hasIntFields } from '../unicorn/probe-cache.js';

/** How much of uc_struct is searched for the CPUState pointer. */
const UC_STRUCT_SCAN = 0x4000;

export interface EngineCpuState {
  /** Offset in uc_struct of `CPUState *cpu`. */
  cpuField: number;
  /** From CPUState to where context offsets start. */
  envOffset: number;
}

let cached: EngineCpuState | string | undefined;

export function engineCpuState(): EngineCpuState | string {
  cached ??= discover();
  return cached;
}

function discover(): EngineCpuState | string {
  // The helper's symbol look-ups are needed with a cached layout too.
  if ((loadUnicorn().fn.initIrq() as number) !== 0) return 'libunicorn does not export cpu_interrupt_handler';
  return cachedProbe('cpuState', hasIntFields('cpuField', 'envOffset'), findOnProbeEngine, (v) => typeof v !== 'string');
}

function findOnProbeEngine(): EngineCpuState | string {
  const e = new UnicornEngine(UC_MODE_32);
  try {
    // Register values nothing else holds: their bytes are found only in CPUX86State and saved copies of it.
    [REG.EAX, REG.ECX, REG.EDX, REG.EBX, REG.ESP, REG.EBP, REG.ESI, REG.EDI].forEach((r, i) => e.writeReg(r, 0x5eed_0000 + i * 0x1357));
    const regs = contextLayout().regs;
    const found = e.findCpuState(e.saveContext().subarray(regs, regs + 64), regs, UC_STRUCT_SCAN);
    return typeof found === 'number' ? `QEMU's CPUState not found from uc_struct (rc ${found})` : found;
  } finally {
    e.close();
  }
}
