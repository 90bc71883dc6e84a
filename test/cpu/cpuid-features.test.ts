import { describe, expect, it } from 'vitest';
import { buildRom } from '../support/asm.js';
import { BareHost } from '../support/bare-host.js';
import { cpuid, type CpuidResult } from '../../machine/cpu/x86/cpuid.js';

type Reg = keyof CpuidResult;

/**
 * Every feature flag our CPUID may advertise, with how the fixture proves it:
 * 'user' = one instruction that must run in ring 0 and ring 3; 'ring0' = a
 * privileged one, which must run in ring 0 and raise `ring3Fault` in ring 3;
 * or why no instruction can show it (a paging or mode feature).
 */
type Proof = { probe: 'user' } | { probe: 'ring0'; ring3Fault: number } | { why: string };
interface Feature {
  name: string;
  leaf: number;
  reg: Reg;
  bit: number;
  proof: Proof;
}

const user: Proof = { probe: 'user' };
const f = (name: string, leaf: number, reg: Reg, bit: number, proof: Proof): Feature => ({ name, leaf, reg, bit, proof });

const FEATURES: Feature[] = [
  f('SSE3', 1, 'ecx', 0, user),
  f('PCLMULQDQ', 1, 'ecx', 1, user),
  f('MONITOR', 1, 'ecx', 3, { probe: 'ring0', ring3Fault: 6 }),
  f('SSSE3', 1, 'ecx', 9, user),
  f('CX16', 1, 'ecx', 13, user),
  f('SSE41', 1, 'ecx', 19, user),
  f('SSE42', 1, 'ecx', 20, user),
  f('POPCNT', 1, 'ecx', 23, user),
  f('TSC_DEADLINE', 1, 'ecx', 24, { why: 'a LAPIC timer mode (IA32_TSC_DEADLINE), no instruction: test/hypervisor/tsc.test.ts' }),
  f('AES', 1, 'ecx', 25, user),
  f('FPU', 1, 'edx', 0, user),
  f('DE', 1, 'edx', 2, { why: 'debugging extensions (CR4.DE): no instruction' }),
  f('PSE', 1, 'edx', 3, { why: 'paging: 4 MiB pages (paging.ts, test/cpu/delivery)' }),
  f('TSC', 1, 'edx', 4, user),
  f('MSR', 1, 'edx', 5, { probe: 'ring0', ring3Fault: 13 }),
  f('PAE', 1, 'edx', 6, { why: 'paging: long mode needs it; the fixture runs under PAE paging' }),
  f('MCE', 1, 'edx', 7, { why: 'machine-check exception: no instruction' }),
  f('CX8', 1, 'edx', 8, user),
  f('APIC', 1, 'edx', 9, { why: 'a device (machine/devices/lapic.ts), no instruction' }),
  f('SEP', 1, 'edx', 11, { why: 'SYSENTER is not feature-gated by the engine; AMD long mode refuses it (vendor rule)' }),
  f('MTRR', 1, 'edx', 12, { why: 'MSRs only' }),
  f('PGE', 1, 'edx', 13, { why: 'paging: global pages' }),
  f('MCA', 1, 'edx', 14, { why: 'MSRs only' }),
  f('CMOV', 1, 'edx', 15, user),
  f('PAT', 1, 'edx', 16, { why: 'paging: memory types' }),
  f('PSE36', 1, 'edx', 17, { why: 'paging: 36-bit 4 MiB pages' }),
  f('CLFSH', 1, 'edx', 19, user),
  f('MMX', 1, 'edx', 23, user),
  f('FXSR', 1, 'edx', 24, user),
  f('SSE', 1, 'edx', 25, user),
  f('SSE2', 1, 'edx', 26, user),
  f('LAHF_LM', 0x80000001, 'ecx', 0, user),
  f('ABM', 0x80000001, 'ecx', 5, user),
  f('SYSCALL', 0x80000001, 'edx', 11, { why: 'needs STAR/LSTAR and a kernel entry: test/cpu/delivery (cpu-modes.S "S")' }),
  f('NX', 0x80000001, 'edx', 20, { why: 'paging: no-execute bit' }),
  f('PDPE1GB', 0x80000001, 'edx', 26, { why: 'paging: 1 GiB pages' }),
  f('RDTSCP', 0x80000001, 'edx', 27, user),
  f('LM', 0x80000001, 'edx', 29, { why: 'long mode: the fixture runs in it' }),
];

/** The leaves and registers that hold feature flags (the hypervisor bit is not a CPU feature). */
const FEATURE_WORDS: Array<{ leaf: number; reg: Reg; ignore: number }> = [
  { leaf: 1, reg: 'ecx', ignore: 1 << 31 },
  { leaf: 1, reg: 'edx', ignore: 0 },
  { leaf: 7, reg: 'ebx', ignore: 0 },
  { leaf: 7, reg: 'ecx', ignore: 0 },
  { leaf: 7, reg: 'edx', ignore: 0 },
  { leaf: 0x80000001, reg: 'ecx', ignore: 0 },
  { leaf: 0x80000001, reg: 'edx', ignore: 0 },
];

const hex = (n: number): string => `0x${n.toString(16)}`;

describe('honest CPUID: every advertised feature executes (test/fixtures/cpuid-features.S)', () => {
  const cfg = { apicId: 0, logicalCpus: 1, hypervisor: true };

  it('every flag our CPUID sets has a proof in this test, and every proof names a flag that is set', () => {
    const advertised: string[] = [];
    for (const w of FEATURE_WORDS) {
      const value = (cpuid(w.leaf, 0, cfg)[w.reg] & ~w.ignore) >>> 0;
      for (let bit = 0; bit < 32; bit++) if (value & (1 << bit)) advertised.push(`${hex(w.leaf)}.${w.reg}[${bit}]`);
    }
    const listed = FEATURES.map((x) => `${hex(x.leaf)}.${x.reg}[${x.bit}]`);
    expect(advertised.sort()).toEqual([...listed].sort());
  });

  it('runs one instruction of each in ring 0 and in ring 3 on the CPU model we use', () => {
    const host = new BareHost(buildRom('cpuid-features.S'));
    const exits = host.run();
    expect(host.exitValue, `${host.console}\n${JSON.stringify(exits.at(-1))}`).toBe(0);
    const lines = host.console.trim().split('\n');
    const expected: string[] = [];
    const probed = FEATURES.filter((x) => 'probe' in x.proof);
    for (const ring of [0, 3]) {
      for (const x of probed) {
        const p = x.proof as Extract<Proof, { probe: string }>;
        const outcome = p.probe === 'ring0' && ring === 3 ? `#${p.ring3Fault}` : 'ok';
        expected.push(`${x.name} r${ring} ${outcome}`);
      }
    }
    expect(lines).toEqual(expected);
  });
});
