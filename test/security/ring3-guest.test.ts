import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createGuestMachine } from '../../vmm/run-guests.js';
import { buildImages } from '../../tools/build-images.mjs';

const MiB = 1024 * 1024;

/**
 * guests/hostile: ring-3 code of a VM tries port I/O (POST port, PIC mask,
 * isa-debug-exit with code 0x2a, REP INS/OUTS), a shutdown hypercall, MONITOR
 * and MWAIT, under IOPL 0, IOPL 3 and an I/O permission bitmap; its kernel
 * then maps pages and page tables above MAXPHYADDR and stores into holes.
 * Before the CPU layer made these checks, the isa-debug-exit write ended the
 * VM with code 0x2a, and a page table above MAXPHYADDR hung the emulator.
 */
describe('a hostile program in a VM', () => {
  it('gets #GP(0) for ring-3 port I/O its IOPL and I/O bitmap do not allow, #UD for ring-3 VMCALL, MONITOR and MWAIT, #PF(RSVD) for page tables beyond MAXPHYADDR, and dropped stores into holes', async () => {
    const images = (await buildImages({ quiet: true })).guests;
    const { machine, hypervisor, vms } = createGuestMachine([{ path: images['hostile']!, memBytes: 64 * MiB, vcpus: 1 }], { pcpus: 1, pace: 'virtual' });
    try {
      const exit = await machine.run({ timeoutMs: 120_000 });
      const serial = vms[0]!.serial;
      // QEMU's transcript (test/guests/expected/hostile.txt) byte for byte: every probe as the SDM says.
      expect(serial).toBe(readFileSync(join(import.meta.dirname, '../guests/expected/hostile.txt'), 'latin1'));
      expect(serial).toContain('hostile: IOPL 0: out 0xf4 (isa-debug-exit): #GP(0)\r\n');
      expect(serial).toContain('hostile: vmcall (shutdown) at CPL 3: #UD(0)\r\n');
      expect(serial).toContain('hostile: bitmap {0x80}: out word 0x80: #GP(0)\r\n');
      expect(serial).toContain('hostile: bitmap {0x80}: rep outsb to 0x80: ran\r\n');
      expect(serial).toContain('hostile: rep insb faulted with RCX 4 (no iteration ran)\r\n');
      // The VM ended through its own kernel's exit (0), not the ring-3 write of 0x2a nor the hypercall.
      expect(exit).toMatchObject({ reason: 'debug-exit', code: 1 });
      const report = hypervisor.guestReports()[0]!;
      // No hypercall was serviced: a refused VMCALL is a #UD, not a vmcall exit.
      expect(report.exits['vmcall']).toBe(0);
      // Each refusal is logged with its reason for the event pane.
      const events = machine.events.map((e) => `${e.kind} ${e.detail}`);
      expect(events.filter((e) => /#GP.*port 0x81 \(1 byte\): denied by the I\/O permission bitmap/.test(e))).toHaveLength(1);
      expect(events.filter((e) => /#GP.*port 0x3fd \(1 byte\): bitmap byte at TSS\+0xe7 beyond the TSS limit/.test(e))).toHaveLength(1);
      expect(events.filter((e) => /#UD.*\(VMCALL at CPL 3\)/.test(e))).toHaveLength(2);
      expect(events.filter((e) => /#UD.*\(MONITOR at CPL 3\)/.test(e))).toHaveLength(1);
      expect(events.filter((e) => /#UD.*\(MWAIT at CPL 3\)/.test(e))).toHaveLength(1);
      // Page-table entries above MAXPHYADDR (40) or with reserved large-page bits: #PF with P|RSVD
      // (0x9, as the SDM says; QEMU 7.2 leaves P clear, so the guest checks RSVD alone), where the
      // process used to die of an EptError or hang.
      expect(serial).toContain('hostile: read through a page table at bit 45: #PF, reserved bit (error 0x8 or 0x9)\r\n');
      expect(events.filter((e) => /#PF cr2=0x3fe00000 err=0x9\b/.test(e))).toHaveLength(4);
      // Stores into guest-physical holes are dropped and the instruction completes, as in QEMU: a
      // REP STOS across a hole ends with RCX 0 (it was left at 0x80200 with the hole's iterations
      // skipped), and an interrupt delivered onto a stack in a hole reaches its handler (the VM was stopped).
      expect(serial).toContain('hostile: rep stosd over 2 KiB RAM, a 2 MiB hole, 2 KiB RAM: RCX 0, RDI advanced 0x201000, RAM before and after the hole written: yes\r\n');
      expect(serial).toContain('hostile: INT 0x81 with the stack in a hole: handler ran 1 time(s)\r\n');
      // Checks the CPU layer makes for what Unicorn hands to us: a non-canonical access is #GP(0)
      // (it was a #PF), SYSCALL with EFER.SCE clear is #UD (it entered LSTAR).
      expect(serial).toContain('hostile: read at non-canonical 0x800000001000: #GP(0)\r\n');
      expect(serial).toContain('hostile: SYSCALL with EFER.SCE clear: #UD\r\n');
    } finally {
      hypervisor.close();
      machine.close();
    }
  });
});
