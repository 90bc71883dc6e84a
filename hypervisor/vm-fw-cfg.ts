/**
 * The fw_cfg device every VM gets, as QEMU gives every guest one at 0x510:
 * signature, ID (traditional + DMA), RAM size, NB_CPUS = the VM's vCPU count
 * (kvm-unit-tests' smp_init waits for that many APs), and a file directory
 * holding etc/e820. DMA goes to the VM's own guest-physical memory.
 */
import { FwCfg } from '../machine/devices/fw-cfg.js';
import type { PhysicalMemoryAccess } from '../machine/devices/device.js';

/** QEMU's etc/e820 layout: {u64 addr, u64 len, u32 type}, type 1 = RAM. */
export function vmE820Table(ramBytes: number): Uint8Array {
  const out = new Uint8Array(20);
  const dv = new DataView(out.buffer);
  dv.setBigUint64(0, 0n, true);
  dv.setBigUint64(8, BigInt(ramBytes), true);
  dv.setUint32(16, 1, true);
  return out;
}

export function createVmFwCfg(memory: PhysicalMemoryAccess, ramBytes: number, vcpus: number): FwCfg {
  const fwCfg = new FwCfg({ memory, ramBytes, cpus: vcpus });
  fwCfg.addFile('etc/e820', vmE820Table(ramBytes));
  return fwCfg;
}
