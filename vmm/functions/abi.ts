/**
 * The function runtime's host ABI (guests/function-runtime/abi.h, docs/functions.md):
 * hypercall numbers, the guest-physical layout, the mailbox and status codes.
 */
import type { FnMemory } from './private-window.js';

export const FN_HYPERCALL = {
  READY: 16,
  WAIT: 17,
  RESPOND: 18,
  USER_ENTER: 19,
  EXTERNAL: 20,
} as const;
export const FN_ABI_VERSION = 1;

export const FN_PRIVATE = { gpa: 0x200000, length: 0x200000 } as const;
export const FN_MAILBOX_GPA = 0x218000;
export const FN_ELF_GPA = 0x220000;
export const FN_ELF_MAX = 0x80000;
export const FN_BODY_GPA = 0x2a0000;
export const FN_OUT_GPA = 0x2b0000;
export const FN_IO_MAX = 0x10000;
export const FN_EXT_GPA = 0x2c0000;
export const FN_EXT_URL_MAX = 2048;
/** Where functions are linked (the runtime maps them there, from guest-physical 0x300000). */
export const FN_USER_VA = 0x400000;
/** Guest-physical home of the function's segments (FN_USER_PHYS in abi.h), at most 1 MiB. */
export const FN_USER_PHYS = 0x300000;
export const FN_USER_PAGES_MAX = 256;
/** Where the runtime's kernel sees guest-physical 0 (KERNEL_VMA in guests/lib/include/x86_64.h). */
export const FN_KERNEL_ALIAS = 0xffffffff80000000;
export const FN_MAILBOX_MAGIC = 0x424d4e46;
/** The lowest guest RAM the runtime accepts (the private range ends at 4 MiB). */
export const FN_MIN_RAM = 4 * 1024 * 1024;

export const FN_STATUS = ['ok', 'fault', 'timeout', 'bad-elf', 'bad-syscall', 'too-big', 'function-error'] as const;
export type FnStatus = (typeof FN_STATUS)[number];

/** Byte offsets in struct fn_mailbox. */
const OFF = {
  magic: 0, seq: 4, elfLen: 8, bodyLen: 12, limitMs: 16, doneSeq: 20, status: 24, respLen: 28,
  faultVector: 32, faultAddr: 40, faultRip: 48, extUrlLen: 56, extBodyLen: 60, extStatus: 64, extRespLen: 68, ready: 72, userPages: 76,
} as const;
const MAILBOX_BYTES = 80;

export interface MailboxView {
  magic: number;
  seq: number;
  doneSeq: number;
  status: number;
  respLen: number;
  faultVector: bigint;
  faultAddr: bigint;
  faultRip: bigint;
  extUrlLen: number;
  extBodyLen: number;
  ready: number;
  userPages: number;
}

export function readMailbox(mem: FnMemory): MailboxView {
  const b = mem.read(FN_MAILBOX_GPA, MAILBOX_BYTES);
  const d = new DataView(b.buffer, b.byteOffset, b.byteLength);
  return {
    magic: d.getUint32(OFF.magic, true),
    seq: d.getUint32(OFF.seq, true),
    doneSeq: d.getUint32(OFF.doneSeq, true),
    status: d.getUint32(OFF.status, true),
    respLen: d.getUint32(OFF.respLen, true),
    faultVector: d.getBigUint64(OFF.faultVector, true),
    faultAddr: d.getBigUint64(OFF.faultAddr, true),
    faultRip: d.getBigUint64(OFF.faultRip, true),
    extUrlLen: d.getUint32(OFF.extUrlLen, true),
    extBodyLen: d.getUint32(OFF.extBodyLen, true),
    ready: d.getUint32(OFF.ready, true),
    userPages: d.getUint32(OFF.userPages, true),
  };
}

/**
 * Puts an invocation into the VM's mailbox: the ELF, the body, then the header with a new
 * sequence number (last, so a half-written one is never seen). `elf` null: the VM's staging
 * area holds it already (elfLength bytes). `previousBodyLength`: what is
 * left of the last body in the VM is zeroed, so the function cannot read an earlier request.
 */
export function writeInvocation(mem: FnMemory, inv: { seq: number; elf: Uint8Array | null; elfLength?: number; body: Uint8Array; limitMs: number; previousBodyLength?: number }): void {
  // null: the staging area already holds this ELF (of elfLength bytes).
  if (inv.elf) mem.write(FN_ELF_GPA, inv.elf);
  const elfLength = inv.elf ? inv.elf.length : (inv.elfLength ?? 0);
  if (inv.body.length > 0) mem.write(FN_BODY_GPA, inv.body);
  const stale = Math.min(inv.previousBodyLength ?? 0, FN_IO_MAX) - inv.body.length;
  if (stale > 0) mem.write(FN_BODY_GPA + inv.body.length, new Uint8Array(stale));
  const b = mem.read(FN_MAILBOX_GPA, MAILBOX_BYTES).slice();
  const d = new DataView(b.buffer);
  d.setUint32(OFF.elfLen, elfLength, true);
  d.setUint32(OFF.bodyLen, inv.body.length, true);
  d.setUint32(OFF.limitMs, inv.limitMs, true);
  d.setUint32(OFF.seq, inv.seq, true);
  mem.write(FN_MAILBOX_GPA, b);
}

/** The external service's answer, where the runtime's EXTERNAL hypercall finds it when it returns. status 0: not reached. */
export function writeExternalAnswer(mem: FnMemory, status: number, body: Uint8Array): void {
  const n = Math.min(body.length, FN_IO_MAX);
  if (n > 0) mem.write(FN_EXT_GPA, body.subarray(0, n));
  const b = mem.read(FN_MAILBOX_GPA, MAILBOX_BYTES).slice();
  const d = new DataView(b.buffer);
  d.setUint32(OFF.extStatus, status, true);
  d.setUint32(OFF.extRespLen, n, true);
  mem.write(FN_MAILBOX_GPA, b);
}

/** The request the function staged for EXTERNAL: URL and body. */
export function readExternalRequest(mem: FnMemory, mb: MailboxView): { url: string; body: Uint8Array } {
  const urlLen = Math.min(mb.extUrlLen, FN_EXT_URL_MAX);
  const bodyLen = Math.min(mb.extBodyLen, FN_IO_MAX - FN_EXT_URL_MAX);
  return {
    url: Buffer.from(mem.read(FN_EXT_GPA, urlLen)).toString('utf8'),
    body: mem.read(FN_EXT_GPA + urlLen, bodyLen).slice(),
  };
}

export function readResponse(mem: FnMemory, mb: MailboxView): Uint8Array {
  return mem.read(FN_OUT_GPA, Math.min(mb.respLen, FN_IO_MAX)).slice();
}

const VECTORS: Record<number, string> = { 0: '#DE', 1: '#DB', 3: '#BP', 4: '#OF', 5: '#BR', 6: '#UD', 7: '#NM', 8: '#DF', 10: '#TS', 11: '#NP', 12: '#SS', 13: '#GP', 14: '#PF', 16: '#MF', 17: '#AC', 19: '#XM' };

/** What went wrong, for the error response. */
export function describeFailure(status: FnStatus, mb: MailboxView, limitMs: number): string {
  const hex = (v: bigint) => `0x${v.toString(16)}`;
  switch (status) {
    case 'fault': {
      const v = Number(mb.faultVector);
      const name = VECTORS[v] ?? `vector ${v}`;
      return v === 14 ? `${name} at rip=${hex(mb.faultRip)} accessing ${hex(mb.faultAddr)}` : `${name} at rip=${hex(mb.faultRip)}`;
    }
    case 'timeout':
      return `still running after the limit of ${limitMs} ms`;
    case 'bad-elf':
      return 'the runtime refused the ELF';
    case 'bad-syscall':
      return `unknown syscall at rip=${hex(mb.faultRip)}`;
    case 'function-error':
      return `the function returned ${BigInt.asIntN(64, mb.faultRip)}`;
    case 'too-big':
      return `the response is larger than ${FN_IO_MAX} bytes`;
    default:
      return status;
  }
}
