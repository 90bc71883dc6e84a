/**
 * Code at linear address 0 runs: an AP started by SIPI vector 0 begins at
 * CS:IP = 0000:0000. uc_emu_start's `until` must not stop it there (the engine
 * runs with Unicorn's exit list enabled and empty, so no address is an exit).
 */
import { describe, expect, it } from 'vitest';
import { UnicornEngine } from '../../machine/cpu/unicorn/engine.js';
import { REG, UC_MODE_64, UC_PROT_ALL } from '../../machine/cpu/unicorn/constants.js';
import { buildImages } from '../../tools/build-images.mjs';
import { createGuestMachine } from '../../vmm/run-guests.js';

describe('code at linear 0', () => {
  for (const [name, mode] of [['64-bit', UC_MODE_64]] as const) {
    it(`the engine executes from address 0 in ${name} mode`, () => {
      const e = new UnicornEngine(mode);
      try {
        const ram = new Uint8Array(new SharedArrayBuffer(0x10000));
        e.mapHost(0, ram, UC_PROT_ALL);
        // inc ax; inc ax; hlt (0x40 is REX in 64-bit mode: use the two-byte inc there).
        ram.set(mode === UC_MODE_64 ? [0xff, 0xc0, 0xff, 0xc0, 0xf4] : [0x40, 0x40, 0xf4], 0);
        e.writeReg(REG.RAX, 5);
        expect(e.start(0n)).toBe(0);
        expect(Number(e.readReg(REG.RAX) & 0xffffn)).toBe(7);
        expect(e.readReg(REG.RIP)).toBe(mode === UC_MODE_64 ? 5n : 3n);
        // And a jump back to 0 inside a run does not stop there either: jmp 0 after one pass.
        ram.set(mode === UC_MODE_64 ? [0xff, 0xc0, 0x83, 0xf8, 0x0a, 0x75, 0xf9, 0xf4] : [0x40, 0x83, 0xf8, 0x0a, 0x75, 0xfa, 0xf4], 0);
        e.flushCode(); // a host write over translated code
        e.writeReg(REG.RAX, 0);
        expect(e.start(0n)).toBe(0);
        expect(Number(e.readReg(REG.RAX) & 0xffffn)).toBe(10);
      } finally {
        e.close();
      }
    });
  }
});

describe('SIPI vector 0 in a VM', () => {
  it('starts the AP in real mode at 0000:0000 and runs it (it writes to COM2, then halts)', async () => {
    const images = (await buildImages({ quiet: true })).guests;
    const { machine, hypervisor, vms } = createGuestMachine([{ path: images['scan']!, memBytes: 64 * 1024 * 1024, vcpus: 2, cmdline: 'fill=1' }], { pcpus: 2, pace: 'virtual' });
    try {
      const vm = vms[0]!;
      // mov dx, 0x2f8; mov al, 'Z'; out dx, al; mov al, 'z'; out dx, al; cli; hlt
      vm.vmMemory.write(0, Uint8Array.of(0xba, 0xf8, 0x02, 0xb0, 0x5a, 0xee, 0xb0, 0x7a, 0xee, 0xfa, 0xf4));
      vm.vcpus[1]!.cpu.startupAt(0);
      await machine.run({ timeoutMs: 120_000 });
      expect(vm.com2Serial).toBe('Zz');
      expect(vm.vcpus[1]!.cpu.readRip()).toBe(11n);
    } finally {
      hypervisor.close();
      machine.close();
    }
  });
});
