/**
 * Direct kernel boot, like `qemu-system-x86_64 -kernel`: a Multiboot v1 image
 * is loaded into RAM without running firmware, and the BSP starts at its
 * entry in 32-bit protected mode with EAX = 0x2BADB002 and EBX = the MBI.
 * The legacy devices are left the way SeaBIOS leaves them under QEMU.
 */
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { PcMachine, type PcConfig } from './pc.js';
import { DEFAULT_ROM } from './boot.js';
import { seabiosDeviceState } from '../../hypervisor/legacy-state.js';
import { parseMultibootImage, loadIntoRam, buildMultibootInfo, qemuPcMemoryMap, DEFAULT_MBI_REGION, MULTIBOOT_BOOTLOADER_MAGIC } from '../../hypervisor/multiboot/index.js';

export interface DirectBootOptions {
  kernelPath: string;
  cmdline?: string;
  memBytes: number;
  cpus: number;
  pace?: PcConfig['pace'];
  faults?: PcConfig['faults'];
}

export function createDirectBootMachine(o: DirectBootOptions): PcMachine {
  const image = new Uint8Array(readFileSync(o.kernelPath));
  const plan = parseMultibootImage(image, basename(o.kernelPath), { ramSize: o.memBytes });
  const m = new PcMachine({ memBytes: o.memBytes, cpus: o.cpus, rom: new Uint8Array(readFileSync(DEFAULT_ROM)), pace: o.pace ?? 'realtime', faults: o.faults ?? [] });
  loadIntoRam(plan, m.memory.ram);
  // QEMU passes "<kernel file name> <-append text>" as the command line.
  const cmdline = [o.kernelPath, o.cmdline ?? ''].join(' ').trimEnd();
  const mbi = buildMultibootInfo({ memoryMap: qemuPcMemoryMap(o.memBytes), cmdline, bootLoaderName: 'qemu', placeAt: DEFAULT_MBI_REGION });
  m.memory.write(mbi.base, mbi.bytes);
  seabiosDeviceState(m.io);
  m.cpus[0]!.enterFlatProtectedMode(plan.entry, MULTIBOOT_BOOTLOADER_MAGIC, mbi.address);
  return m;
}
