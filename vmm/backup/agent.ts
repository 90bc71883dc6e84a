/**
 * The guest-agent channel of the backup service: a hypercall mailbox. A guest
 * registers a mailbox page (AGENT_REGISTER, hypercall 24) that names its
 * backup profile; the host writes requests there (quiesce, thaw, verify) with
 * a sequence number, and the guest acknowledges a quiesce with AGENT_ACK (25),
 * where the host holds the VM until it thaws it.
 */
import type { Hypervisor } from '../../hypervisor/hypervisor.js';
import type { Vcpu, Vm } from '../../hypervisor/vm.js';
import { HC_ENOSYS } from '../../hypervisor/hypercalls.js';

export const AGENT_HYPERCALL = { REGISTER: 24, ACK: 25 } as const;
export const AGENT_MAGIC = 0x47414d46; // "FMAG"
export const AGENT_REQUEST = { NONE: 0, QUIESCE: 1, THAW: 2, VERIFY: 3 } as const;
const OFF = { magic: 0, request: 4, requestSeq: 8, ackSeq: 12, state: 16, verify: 20, profile: 24 } as const;
const PROFILE_MAX = 64;

export interface AgentInfo {
  vm: Vm;
  mailboxGpa: number;
  profile: string;
  /** Resolves the pending quiesce when the guest acknowledges it (the VM is then held). */
  onAck: ((seq: number) => void) | null;
}

/** Reads a registered mailbox's profile (NUL-terminated, printable ASCII). */
function readProfile(vm: Vm, gpa: number): string | null {
  const b = vm.vmMemory.read(gpa, OFF.profile + PROFILE_MAX);
  if (new DataView(b.buffer, b.byteOffset).getUint32(OFF.magic, true) !== AGENT_MAGIC) return null;
  const p = b.subarray(OFF.profile, OFF.profile + PROFILE_MAX);
  const end = p.indexOf(0);
  if (end <= 0) return null;
  const s = Buffer.from(p.subarray(0, end)).toString('latin1');
  return /^[\x21-\x7e]+$/.test(s) ? s : null;
}

/** Backup agents of one hypervisor's VMs. attach() hooks hypercalls 24-25 on every VM it has. */
export class BackupAgents {
  readonly agents = new Map<Vm, AgentInfo>();

  constructor(readonly hypervisor: Hypervisor) {}

  attach(vm: Vm): void {
    const previous = vm.onServiceCall;
    vm.onServiceCall = (v, vcpu, fn, arg) => (fn === AGENT_HYPERCALL.REGISTER || fn === AGENT_HYPERCALL.ACK ? this.call(v, vcpu, fn, arg) : previous ? previous(v, vcpu, fn, arg) : HC_ENOSYS);
  }

  attachAll(): void {
    for (const vm of this.hypervisor.vms) this.attach(vm);
  }

  private call(vm: Vm, vcpu: Vcpu, fn: number, arg: bigint): bigint {
    if (fn === AGENT_HYPERCALL.REGISTER) {
      const gpa = Number(arg);
      if (!Number.isSafeInteger(gpa) || gpa % 4096 !== 0 || gpa + 4096 > vm.vmMemory.ramBytes) return HC_ENOSYS;
      const profile = readProfile(vm, gpa);
      if (profile === null) return HC_ENOSYS;
      this.agents.set(vm, { vm, mailboxGpa: gpa, profile, onAck: null });
      vm.machine.log('backup', `${vm.name}: agent mailbox at 0x${gpa.toString(16)}, profile '${profile}'`);
      return 0n;
    }
    const a = this.agents.get(vm);
    if (!a?.onAck) return HC_ENOSYS;
    // Hold the VM where it acknowledged: nothing runs until thaw.
    vm.frozen = true;
    vcpu.cpu.requestStop();
    a.onAck(Number(arg & 0xffff_ffffn));
    return 0n;
  }

  /** Writes a request with a new sequence number into the VM's mailbox. */
  request(a: AgentInfo, request: number): number {
    const cur = a.vm.vmMemory.read(a.mailboxGpa, 16);
    const seq = (new DataView(cur.buffer, cur.byteOffset).getUint32(OFF.requestSeq, true) + 1) >>> 0;
    const b = new Uint8Array(8);
    const d = new DataView(b.buffer);
    d.setUint32(0, request, true);
    d.setUint32(4, seq, true);
    a.vm.vmMemory.write(a.mailboxGpa + OFF.request, b);
    return seq;
  }
}

/** Writes a request into a mailbox at `gpa` of a VM that has no agent record (a restored VM before it runs). */
export function writeAgentRequest(vm: Vm, gpa: number, request: number): void {
  const cur = vm.vmMemory.read(gpa, 16);
  const seq = (new DataView(cur.buffer, cur.byteOffset).getUint32(OFF.requestSeq, true) + 1) >>> 0;
  const b = new Uint8Array(8);
  const d = new DataView(b.buffer);
  d.setUint32(0, request, true);
  d.setUint32(4, seq, true);
  vm.vmMemory.write(gpa + OFF.request, b);
}
