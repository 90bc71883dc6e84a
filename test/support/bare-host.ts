/** A CPU host with only memory, a debug console (0xE9) and isa-debug-exit (0xF4): for CPU-layer tests. */
import { X86Cpu, type CpuHost, type LocalMmio, type MsrExitHandler, type SliceExit } from '../../machine/cpu/x86-cpu.js';
import { PhysicalMemory, MiB } from '../../machine/memory/physical-memory.js';

export class BareHost implements CpuHost {
  readonly memory: PhysicalMemory;
  readonly localMmio: LocalMmio[] = [];
  console = '';
  exitValue: number | null = null;
  irqVector: number | null = null;
  readonly cpu: X86Cpu;
  readonly msrExits: MsrExitHandler | undefined;

  constructor(rom: Uint8Array, ramSize = 16 * MiB, opts: { msrExits?: MsrExitHandler } = {}) {
    this.memory = new PhysicalMemory(ramSize, rom);
    this.msrExits = opts.msrExits;
    this.cpu = new X86Cpu(0, 0, this, { apicId: 0, logicalCpus: 1 });
  }

  ioRead(_cpu: X86Cpu, port: number): number {
    return port === 0xe9 ? 0xe9 : 0xffffffff;
  }

  ioWrite(cpu: X86Cpu, port: number, _size: number, value: number): void {
    if (port === 0xe9) this.console += String.fromCharCode(value & 0xff);
    if (port === 0xf4) {
      this.exitValue = value & 0xff;
      cpu.requestStop();
    }
  }

  interruptPending(): boolean {
    return this.irqVector !== null;
  }

  acknowledgeInterrupt(): number | null {
    const v = this.irqVector;
    this.irqVector = null;
    return v;
  }

  isWatchedPage(): boolean {
    return false;
  }

  onWatchedWrite(): void {}

  /** Runs until debug-exit, a halt with nothing pending, a triple fault or an error. */
  run(maxSlices = 10_000): SliceExit[] {
    const exits: SliceExit[] = [];
    for (let i = 0; i < maxSlices && this.exitValue === null; i++) {
      this.cpu.serviceInterrupts();
      const ex = this.cpu.runSlice(1_000_000n);
      exits.push(ex);
      if (ex.kind === 'halted' || ex.kind === 'triple-fault' || ex.kind === 'error') break;
    }
    return exits;
  }
}
