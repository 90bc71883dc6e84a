/**
 * Debian 12's cloud kernel and busybox (node tools/fetch-linux.mjs puts them in .cache/linux)
 * under `firmament run`: to the busybox shell on COM1, one command, power off.
 * Skipped, and saying so, when the files have not been fetched.
 */
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createGuestMachine } from '../../vmm/run-guests.js';
import { TSC_HZ } from '../../machine/cpu/x86/tsc.js';

const root = resolve(import.meta.dirname, '../..');
const vmlinuz = join(root, '.cache/linux/vmlinuz');
const initramfs = join(root, '.cache/linux/initramfs.cpio.gz');
const fetched = existsSync(vmlinuz) && existsSync(initramfs);
const MiB = 1024 * 1024;

describe.skipIf(!fetched)('Debian 6.1 cloud kernel to a busybox shell (run `node tools/fetch-linux.mjs` first)', () => {
  it('boots with --initrd and --cmdline console=ttyS0, answers a command on COM1 and halts on poweroff', async () => {
    const { machine, hypervisor, vms } = createGuestMachine([{ path: vmlinuz, memBytes: 256 * MiB, vcpus: 1, initrd: initramfs, cmdline: 'console=ttyS0' }], { pcpus: 1, pace: 'realtime' });
    const vm = vms[0]!;
    const steps: Array<{ waitFor: string; send?: string }> = [
      { waitFor: '/ # ', send: 'echo hi-$((6*7))\n' },
      { waitFor: 'hi-42', send: 'poweroff -f\n' },
      // Without ACPI the kernel has no way to power off: it halts (QEMU with acpi=off prints the same).
      { waitFor: 'reboot: System halted' },
    ];
    let step = 0;
    vm.onSerial = () => {
      while (step < steps.length && vm.serial.includes(steps[step]!.waitFor)) {
        const s = steps[step++]!;
        if (s.send) vm.uart.receive(new TextEncoder().encode(s.send));
      }
      if (step === steps.length) machine.finish({ reason: 'stopped', code: 0, atNs: machine.now() });
    };
    try {
      await machine.run({ timeoutMs: 600_000 });
      expect(vm.serial).toContain('Linux version 6.1.0');
      expect(vm.serial).toContain('Run /init as init process');
      expect(vm.serial).toContain('firmament initramfs: busybox');
      expect(step, vm.serial.slice(-3000)).toBe(steps.length);
      // The TSC runs on virtual time: the kernel's PIT calibration finds CPUID's rate and its watchdog keeps it.
      const mhz = /tsc: Detected ([\d.]+) MHz processor/.exec(vm.serial);
      expect(mhz, vm.serial.slice(0, 3000)).not.toBeNull();
      expect(Math.abs(Number(mhz![1]) / (TSC_HZ / 1e6) - 1)).toBeLessThan(0.001);
      expect(vm.serial).not.toMatch(/unstable/i);
      expect(vm.serial).toContain('clocksource: Switched to clocksource tsc\r\n');
    } finally {
      hypervisor.close();
      machine.close();
    }
  }, 900_000);
});
