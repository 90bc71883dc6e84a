/**
 * Every VM has QEMU's fw_cfg at 0x510: read through the VM's own port bus
 * (what a guest's IN/OUT reach), NB_CPUS is the VM's vCPU count, and DMA
 * lands in that VM's guest-physical memory.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { createGuestMachine, type GuestMachine } from '../../vmm/run-guests.js';
import { buildImages } from '../../tools/build-images.mjs';
import type { Vm } from '../../hypervisor/vm.js';

const MiB = 1024 * 1024;
const SEL = 0x510;
const DATA = 0x511;

function readItem(vm: Vm, key: number, length: number): number[] {
  vm.ioWrite(vm.vcpus[0]!.cpu, SEL, 2, key);
  return Array.from({ length }, () => vm.ioRead(vm.vcpus[0]!.cpu, DATA, 1));
}

const le = (bytes: number[]): number => bytes.reduceRight((n, b) => n * 256 + b, 0);

describe('fw_cfg in every VM', () => {
  let gm: GuestMachine | undefined;
  afterAll(() => {
    gm?.hypervisor.close();
    gm?.machine.close();
  });

  it('answers signature, ID, RAM size, NB_CPUS = vCPUs and the file directory per VM', async () => {
    const images = (await buildImages({ quiet: true })).guests;
    gm = createGuestMachine(
      [
        { path: images['scan']!, memBytes: 32 * MiB, vcpus: 2 },
        { path: images['scan']!, memBytes: 16 * MiB, vcpus: 3 },
      ],
      { pcpus: 2, pace: 'virtual' },
    );
    const [a, b] = gm.vms as [Vm, Vm];
    expect(String.fromCharCode(...readItem(a, 0x00, 4))).toBe('QEMU');
    expect(le(readItem(a, 0x01, 4))).toBe(3); // traditional + DMA
    expect(le(readItem(a, 0x05, 2))).toBe(2);
    expect(le(readItem(b, 0x05, 2))).toBe(3);
    expect(le(readItem(a, 0x03, 8))).toBe(32 * MiB);
    expect(le(readItem(b, 0x03, 8))).toBe(16 * MiB);
    // The directory: a big-endian count, then {be32 size, be16 select, u16, name[56]}.
    const dir = readItem(a, 0x19, 4 + 64);
    expect((dir[0]! << 24) | (dir[1]! << 16) | (dir[2]! << 8) | dir[3]!).toBe(1);
    expect((dir[4]! << 24) | (dir[5]! << 16) | (dir[6]! << 8) | dir[7]!).toBe(20);
    const select = (dir[8]! << 8) | dir[9]!;
    expect(String.fromCharCode(...dir.slice(12, 12 + 8))).toBe('etc/e820');
    const e820 = readItem(a, select, 20);
    expect(le(e820.slice(0, 8))).toBe(0);
    expect(le(e820.slice(8, 16))).toBe(32 * MiB);
    expect(le(e820.slice(16, 20))).toBe(1);
  });

  it('DMA writes into the VM own RAM, and a target outside its RAM gets the error bit, not a host write', () => {
    const vm = gm!.vms[1]!;
    const cpu = vm.vcpus[0]!.cpu;
    const desc = 0x8000;
    const dest = 0x9000;
    const descriptor = (control: number, length: number, address: number): Uint8Array => {
      const d = new Uint8Array(16);
      const dv = new DataView(d.buffer);
      dv.setUint32(0, control, false);
      dv.setUint32(4, length, false);
      dv.setUint32(8, Math.floor(address / 2 ** 32), false);
      dv.setUint32(12, address >>> 0, false);
      return d;
    };
    const control = (): number => {
      const b = vm.vmMemory.read(desc, 4);
      return new DataView(b.buffer, b.byteOffset, 4).getUint32(0, false);
    };
    const kick = (): void => {
      vm.ioWrite(cpu, 0x514, 4, 0); // high half (big-endian on the wire)
      vm.ioWrite(cpu, 0x518, 4, ((desc & 0xff) << 24) | (((desc >> 8) & 0xff) << 16) | (((desc >> 16) & 0xff) << 8) | ((desc >> 24) & 0xff));
    };
    // SELECT NB_CPUS | READ, 2 bytes.
    vm.vmMemory.write(desc, descriptor((0x05 << 16) | 0x08 | 0x02, 2, dest));
    kick();
    expect(Array.from(vm.vmMemory.read(dest, 2))).toEqual([3, 0]);
    expect(control()).toBe(0);
    // Past the VM's 16 MiB: refused with the error bit.
    vm.vmMemory.write(desc, descriptor((0x00 << 16) | 0x08 | 0x02, 4, 64 * MiB));
    kick();
    expect(control() & 1).toBe(1);
  });
});
