/**
 * What a VM tells the behaviour observers (hypervisor/security/) about its
 * exit stream. The VM calls these from its exit handlers; with no observer
 * attached each hook costs one empty-array loop.
 */
import type { X86Cpu } from '../../machine/cpu/x86-cpu.js';

export type SerialPort = 'com1' | 'com2';

export interface VmObserver {
  /** A port I/O exit (before the device sees it). */
  io(cpu: X86Cpu, port: number, write: boolean): void;
  /** An RDMSR/WRMSR exit (before it is carried out). */
  msr(cpu: X86Cpu, index: number, write: boolean): void;
  /** A VMCALL with its function number (RAX). */
  hypercall(cpu: X86Cpu, fn: number): void;
  /** A code fetch filled the TLB for a guest-physical page. */
  codeFetch(cpu: X86Cpu, guestPage: number): void;
  /** One byte the guest transmitted on a serial port. */
  serialByte(port: SerialPort): void;
  /** One of the VM's vCPUs finished a time slice (the observer's clock tick). */
  sliceEnd(cpu: X86Cpu): void;
}
