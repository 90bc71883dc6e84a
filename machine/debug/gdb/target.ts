/**
 * What one gdb connection debugs: the bare machine (threads = its CPUs, the
 * whole machine stops) or one VM under the hypervisor (threads = its vCPUs;
 * only that VM stops, the others keep running). Both drive the same
 * Debugger the JSON monitor uses; only the run control and the address
 * spaces differ.
 */
import type { PcMachine } from '../../platform/pc.js';
import type { X86Cpu } from '../../cpu/x86-cpu.js';
import { Debugger, type RunControl } from '../debugger.js';
import { readLinear, readPhysical } from '../../inspect/memory-view.js';

export interface GdbThread {
  /** gdb thread id: 1-based. */
  id: number;
  cpu: X86Cpu;
  /** 'cpu0', 'vm:hello/vcpu0'. */
  name: string;
}

export interface TargetExit {
  reason: string;
  code: number;
  detail?: string;
}

/**
 * What a gdb target needs of a VM. The hypervisor's Vm has all of it; it is
 * spelled out here because machine/ never imports hypervisor/ (the layers).
 */
export interface DebuggableVm {
  readonly name: string;
  /** Held stopped by a debugger: the scheduler skips its vCPUs. */
  frozen: boolean;
  readonly vcpus: readonly { readonly index: number; readonly cpu: X86Cpu }[];
  readonly exit: TargetExit | null;
  readonly vmMemory: { write(gpa: number, data: Uint8Array): void };
  stop(exit: { reason: 'stopped'; code: number; detail?: string }): void;
}

export interface GdbTarget {
  /** 'machine' or 'vm:<name>'. */
  readonly label: string;
  readonly machine: PcMachine;
  readonly debugger: Debugger;
  threads(): GdbThread[];
  /** Physical space of this target: host-physical for the machine, guest-physical for a VM. */
  readPhysical(addr: bigint, length: number): (number | null)[];
  writePhysical(addr: bigint, data: Uint8Array): void;
  /** Host-physical address of a target-physical one (watches are on host memory), or null. */
  hostPhysical(cpu: X86Cpu, paddr: bigint): bigint | null;
  readonly exit: TargetExit | null;
  /** Ends the target's run (gdb `kill`). */
  kill(why: string): void;
  /** Releases what the target added (its own debugger; a shared one stays). */
  close(): void;
}

/** Reads virtual memory through `cpu`'s page tables (and EPT for a vCPU); null where unmapped. */
export function readVirtual(cpu: X86Cpu, addr: bigint, length: number): (number | null)[] {
  return readLinear(cpu, addr, length).bytes;
}

/** The bare machine: every CPU is a thread; a stop pauses the whole machine. */
export function machineTarget(machine: PcMachine, shared?: Debugger): GdbTarget {
  const dbg = shared ?? new Debugger(machine);
  return {
    label: 'machine',
    machine,
    debugger: dbg,
    threads: () => machine.cpus.filter((c) => !c.isClosed).map((cpu, i) => ({ id: i + 1, cpu, name: `cpu${cpu.index}` })),
    readPhysical: (addr, length) => readPhysical(machine.memory, addr, length),
    writePhysical: (addr, data) => machine.memory.write(Number(addr), data),
    hostPhysical: (_cpu, paddr) => paddr,
    get exit() {
      return machine.exit;
    },
    kill: (why) => {
      machine.stop(why);
      if (machine.paused) machine.resume();
    },
    close: () => {
      if (!shared) dbg.detach();
    },
  };
}

/** Stops and starts one VM: its vCPUs leave the hypervisor's schedule while held. */
export function vmRunControl(machine: PcMachine, vm: DebuggableVm): RunControl {
  return {
    get paused() {
      return vm.frozen;
    },
    pause: () => {
      vm.frozen = true;
      for (const v of vm.vcpus) if (!v.cpu.isClosed) v.cpu.requestStop();
    },
    resume: () => {
      vm.frozen = false;
      machine.kick();
    },
    get exit() {
      return vm.exit ?? machine.exit;
    },
    canStep: (cpu) => (vm.vcpus.some((v) => v.cpu === cpu) ? true : `CPU ${cpu.index} is not a vCPU of ${vm.name}`),
  };
}

/**
 * One VM: its vCPUs are the threads, memory is guest-virtual through guest
 * tables and EPT. `wholeMachine` (the only VM, `firmament run`): a stop
 * pauses the machine, so the guest's clocks stop too, as under QEMU; else
 * only this VM is held and the machine's time (its timers included) goes on.
 */
export function vmTarget(machine: PcMachine, vm: DebuggableVm, opts: { wholeMachine?: boolean } = {}): GdbTarget {
  const perVm = vmRunControl(machine, vm);
  const control: RunControl = opts.wholeMachine
    ? {
        get paused() {
          return machine.paused;
        },
        pause: () => machine.pause(),
        resume: () => machine.resume(),
        get exit() {
          return perVm.exit;
        },
        canStep: perVm.canStep,
      }
    : perVm;
  const open = (): X86Cpu[] => vm.vcpus.map((v) => v.cpu).filter((c) => !c.isClosed);
  const dbg = new Debugger(machine, { cpus: open, control });
  return {
    label: `vm:${vm.name}`,
    machine,
    debugger: dbg,
    threads: () => vm.vcpus.filter((v) => !v.cpu.isClosed).map((v, i) => ({ id: i + 1, cpu: v.cpu, name: `vm:${vm.name}/vcpu${v.index}` })),
    readPhysical: (addr, length) => {
      const cpu = open()[0];
      return cpu ? readPhysical(cpu.memory, addr, length) : new Array<number | null>(length).fill(null);
    },
    writePhysical: (addr, data) => vm.vmMemory.write(Number(addr), data),
    hostPhysical: (cpu, gpa) => cpu.inspectSecondLevel(gpa, 'write')?.hpa ?? null,
    get exit() {
      return vm.exit ?? machine.exit;
    },
    kill: (why) => {
      vm.frozen = false;
      vm.stop({ reason: 'stopped', code: 0, detail: why });
    },
    close: () => {
      vm.frozen = false;
      dbg.detach();
      machine.kick();
    },
  };
}
