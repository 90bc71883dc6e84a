import { describe, expect, it } from 'vitest';
import { buildRom } from '../support/asm.js';
import { BareHost } from '../support/bare-host.js';
import type { MsrExitHandler, SliceExit } from '../../machine/cpu/x86-cpu.js';
import { newPermissionMap, VMCB_MSRPM_BASE_PA } from '../../machine/cpu/x86/msr-intercept.js';
import { nativeIrqLayout } from '../../machine/cpu/x86/native-irq.js';

const CONTROL_AREA = 0xf0_0000;
const PERMISSION_MAP = 0xf0_1000;

/** A vCPU's MSR exits with nothing intercepted but what the map says: enough for SVM guest mode. */
const passThrough: MsrExitHandler = { controlArea: () => CONTROL_AREA, read: () => undefined, write: () => false };

function vcpuHost(): BareHost {
  const host = new BareHost(buildRom('native-irq.S'), 16 * 1024 * 1024, { msrExits: passThrough });
  host.memory.writeBytes(PERMISSION_MAP, newPermissionMap([]));
  host.memory.writeU64(CONTROL_AREA + VMCB_MSRPM_BASE_PA, BigInt(PERMISSION_MAP));
  return host;
}

/** Runs test/fixtures/native-irq.S, injecting 0x40, 0x41 and 0x42 at its three HLTs; returns the last exit. */
function runFixture(asVcpu: boolean): { host: BareHost; last: SliceExit | undefined } {
  const host = asVcpu ? vcpuHost() : new BareHost(buildRom('native-irq.S'), 16 * 1024 * 1024);
  let last: SliceExit | undefined;
  for (const vector of [0x40, 0x41, 0x42, null]) {
    last = host.run().at(-1);
    if (vector === null) break;
    expect(last?.kind, `before injecting 0x${vector.toString(16)}`).toBe('halted');
    host.irqVector = vector;
  }
  return { host, last };
}

const TRIPLE = 'triple fault: #GP general protection while delivering #DF double fault (IDT vector 8: gate type 0x0 is invalid)';

describe('native delivery of external interrupts (test/fixtures/native-irq.S)', () => {
  it('is available in this Unicorn build', () => {
    expect(nativeIrqLayout()).toMatchObject({ cpuField: expect.any(Number), request: expect.any(Number) });
  });

  it('a vCPU gets its interrupts from QEMU with the frame the SDM gives; faults on the way in fall back to our delivery', () => {
    const { host, last } = runFixture(true);
    expect(host.cpu.nativeInterrupts).toBe(true);
    // A: the frame QEMU built. B: #NP with error code 0x41*8+IDT+EXT, from our delivery after QEMU's faulted.
    expect(host.console).toBe('AB');
    expect(last).toEqual({ kind: 'triple-fault', reason: TRIPLE });
    expect(host.cpu.state).toBe('shutdown');
    expect(host.cpu.counters['irq:0x40']).toBe(1);
    expect(host.cpu.counters['irq:0x41']).toBe(1);
  });

  it('bare metal (no SVM guest mode) delivers through delivery.ts with the same results, a triple fault included', () => {
    const { host, last } = runFixture(false);
    expect(host.cpu.nativeInterrupts).not.toBe(true);
    expect(host.console).toBe('AB');
    expect(last).toEqual({ kind: 'triple-fault', reason: TRIPLE });
  });

  it('an interrupt handed to QEMU but not yet delivered is in the saved state', () => {
    const host = vcpuHost();
    expect(host.run().at(-1)?.kind).toBe('halted');
    host.irqVector = 0x40;
    host.cpu.serviceInterrupts(); // acknowledged and injected; no run yet
    const saved = host.cpu.saveState();
    // The saved context is already inside the handler: a machine restoring it (bare metal here,
    // so nothing could deliver it a second time) prints A, as if it had never been saved.
    const other = new BareHost(buildRom('native-irq.S'), 16 * 1024 * 1024);
    other.memory.writeBytes(0x1000, host.memory.readBytes(0x1000, 0x800)); // the IDT
    other.memory.writeBytes(0x7_f000, host.memory.readBytes(0x7_f000, 0x1000)); // the stack page
    other.cpu.restoreState(saved);
    expect(other.run().at(-1)?.kind).toBe('halted');
    expect(other.console).toBe('A');
    // And the original, which withdrew its request, does not deliver it again either.
    expect(host.run().at(-1)?.kind).toBe('halted');
    expect(host.console).toBe('A');
  });
});
