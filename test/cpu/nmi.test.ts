import { describe, expect, it } from 'vitest';
import { buildRom } from '../support/asm.js';
import { BareHost } from '../support/bare-host.js';

describe('NMI (test/fixtures/nmi.S)', () => {
  it('wakes HLT with IF=0, vectors through IVT[2], is blocked until the handler IRETs, and latches one more', () => {
    const host = new BareHost(buildRom('nmi.S'));
    host.run();
    expect(host.console).toBe('A');
    expect(host.cpu.state).toBe('halted');
    host.cpu.raiseNmi();
    host.cpu.serviceInterrupts();
    expect(host.cpu.state).toBe('running');
    host.cpu.runSlice(1_000_000n, 1); // the handler's first instruction
    expect(host.console).toBe('A');
    // A second NMI while the handler runs waits for its IRET (QEMU's HF2_NMI_MASK); a third is the same latched one.
    host.cpu.raiseNmi();
    host.cpu.raiseNmi();
    host.run();
    expect(host.console).toBe('ANB');
    host.run();
    expect(host.console).toBe('ANBNC');
    expect(host.exitValue).toBe(0);
    expect(host.cpu.counters['nmi']).toBe(2);
  });

  it('a latched NMI travels in the CPU record', () => {
    const host = new BareHost(buildRom('nmi.S'));
    host.run();
    host.cpu.raiseNmi();
    const rec = host.cpu.saveState();
    const other = new BareHost(buildRom('nmi.S'));
    other.memory.write(0, host.memory.read(0, 0x1000)); // the IVT
    other.cpu.restoreState(rec);
    other.run();
    expect(other.console).toBe('NB');
  });
});
