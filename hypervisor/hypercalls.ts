/**
 * The VMCALL hypercall ABI (docs/hypercalls.md): RAX = function number,
 * arguments in RBX, RCX, RDX; result in RAX (negative = error).
 */
import { REG } from '../machine/cpu/unicorn/constants.js';
import type { Vcpu, Vm } from './vm.js';
import { appendTranscript } from '../machine/devices/transcript.js';

export const HYPERCALL = {
  VERSION: 0,
  PUTCHAR: 1,
  VCPU_ID: 2,
  YIELD: 3,
  SHUTDOWN: 4,
  /** The guest reached the point where the host may snapshot it (linked clones); ends the slice. */
  CHECKPOINT: 5,
  /** RAX = the clone index the host gave this VM, or -1 when it is not a linked clone. */
  CLONE_INDEX: 6,
} as const;

export const HC_VERSION = 1;
export const HC_ENOSYS = -1n & 0xffff_ffff_ffff_ffffn;

export function handleHypercall(vm: Vm, vcpu: Vcpu): boolean {
  const e = vcpu.cpu.engine;
  const fn = Number(e.readReg(REG.RAX) & 0xffff_ffffn);
  const arg = e.readReg(REG.RBX);
  let result = 0n;
  switch (fn) {
    case HYPERCALL.VERSION:
      result = BigInt(HC_VERSION);
      break;
    case HYPERCALL.PUTCHAR: {
      const ch = String.fromCharCode(Number(arg & 0xffn));
      vm.serial = appendTranscript(vm.serial, ch);
      vm.onSerial?.(ch);
      break;
    }
    case HYPERCALL.VCPU_ID:
      result = BigInt(vcpu.index);
      break;
    case HYPERCALL.YIELD:
      vcpu.cpu.requestStop();
      break;
    case HYPERCALL.SHUTDOWN:
      vm.stop({ reason: 'debug-exit', code: Number(arg & 0xffn) * 2 + 1, detail: `hypercall shutdown(${arg})` });
      break;
    case HYPERCALL.CHECKPOINT:
      vcpu.cpu.requestStop();
      vm.onCheckpoint?.(vm, vcpu);
      break;
    case HYPERCALL.CLONE_INDEX:
      result = vm.cloneIndex === null ? HC_ENOSYS : BigInt(vm.cloneIndex);
      break;
    default:
      // 16-31: the function service's calls (vmm/functions/), when a host service listens on this VM.
      result = fn >= 16 && fn <= 31 && vm.onServiceCall ? vm.onServiceCall(vm, vcpu, fn, arg) : HC_ENOSYS;
  }
  e.writeReg(REG.RAX, result);
  return true;
}
