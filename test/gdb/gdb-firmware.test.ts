/** Real gdb against `firmament boot --gdb tcp::0 --paused`: the firmware from the reset vector. */
import { describe, expect, it } from 'vitest';
import { FIRMWARE_ELF, printedValues, runGdb, startFirmament } from './support.js';

describe('gdb on the bare machine (firmware)', () => {
  it('steps across real->protected->long mode, reads control registers, breaks in POST C code by symbol', async () => {
    const fm = await startFirmament(['boot', '--gdb', 'tcp::0', '--paused', '--clock', 'virtual']);
    try {
      const r = await runGdb(fm.port, FIRMWARE_ELF, [
        'p/x $pc', 'p/x $cs', 'p/x $cr0',
        // mov %eax,%cr0 in reset16.S (linear 0xff022; CS base 0xf0000)
        'break *0xff022', 'continue', 'p/x $cr0',
        'stepi', 'p/x $cr0', 'p/x $pc', 'p/x $cs',
        'stepi', 'p/x $pc', 'p/x $cs',
        // ljmp $0x18,$lm64_entry: compatibility mode -> 64-bit code
        'break *0xe00d0', 'continue', 'p/x $efer', 'p/x $cs', 'p/x $cr4 & 0x20',
        'stepi', 'p/x $pc', 'p/x $cs',
        'break fw_main', 'continue', 'info registers cr0 cr3 cr4 efer', 'info threads',
        // Breakpoints stay inserted while the memory test's tight loops run and get preempted.
        'break memtest_verify_pass', 'continue', 'continue', 'bt 1',
        'detach',
      ]);
      expect(r.output).toContain('in reset_vector ()');
      expect(r.output).toMatch(/Breakpoint 1, 0x0+ff022 in real_entry/);
      expect(r.output).toMatch(/Breakpoint 3, 0x0+e2a00 in fw_main/);
      expect(r.output.match(/Breakpoint 4, 0x0+e3840 in memtest_verify_pass/g)).toHaveLength(2);
      expect(r.output).toMatch(/cr0\s+0x80000033\s+\[ PE MP ET NE PG \]/);
      expect(r.output).toMatch(/cr4\s+0x620\s+\[ PAE OSFXSR OSXMMEXCPT \]/);
      expect(r.output).toMatch(/efer\s+0x500\s+\[ LME LMA \]/);
      expect(r.output).toMatch(/Thread 1 \(cpu0 long running\)/);
      expect(printedValues(r.output)).toEqual([
        '0xffff0', '0xf000', '0x60000010', // reset: real mode, PE clear
        '0x60000010', // at the mov to CR0
        '0x11', '0xff025', '0xf000', // PE set, still 16-bit code in CS F000
        '0xe0000', '0x8', // the far jump lands in 32-bit protected mode
        '0x500', '0x8', '0x20', // long mode active (LMA) in compatibility mode, PAE on
        '0xe0104', '0x18', // 64-bit code segment
      ]);
      // Detached: the machine boots on to the handoff, breakpoints gone.
      expect(await fm.exited).toBe(0);
    } finally {
      await fm.kill();
    }
  }, 180_000);

  it('monitor post 0x33 stops on a POST code; physical memory through monitor; the exit reaches gdb', async () => {
    const fm = await startFirmament(['boot', '--gdb', 'tcp::0', '--paused', '--clock', 'virtual']);
    try {
      const r = await runGdb(fm.port, FIRMWARE_ELF, ['monitor post 0x33', 'continue', 'monitor status', 'p/x $cs', 'monitor phys 0xffff0 16', 'monitor post delete', 'continue']);
      expect(r.output).toContain('breakpoint 1: post 0x33 MEMTEST_PASS');
      expect(r.output).toMatch(/last stop: breakpoint 1: POST 0x33 MEMTEST_PASS/);
      // The reset vector in the ROM alias: a near jmp (e9) to real_entry, then hlt padding.
      expect(r.output).toMatch(/000ffff0\s+e9 [0-9a-f]{2} [0-9a-f]{2} f4/);
      expect(printedValues(r.output)).toEqual(['0x18']);
      // The boot ends (handoff, no guests): gdb hears it as an exit, not a dropped connection.
      expect(r.output).toContain('[Inferior 1 (Remote target) exited normally]');
      expect(await fm.exited).toBe(0);
    } finally {
      await fm.kill();
    }
  }, 180_000);

  it('detach and re-attach: a second gdb finds the machine where the first left it running', async () => {
    const fm = await startFirmament(['boot', '--gdb', 'tcp::0', '--paused', '--clock', 'virtual']);
    try {
      const first = await runGdb(fm.port, FIRMWARE_ELF, ['break *0xe0000', 'continue', 'p/x $pc', 'delete', 'detach']);
      expect(printedValues(first.output)).toEqual(['0xe0000']);
      expect(first.output).toContain('[Inferior 1 (Remote target) detached]');
      // Re-attach: the stub stops the machine again on connect, wherever it is now.
      const second = await runGdb(fm.port, FIRMWARE_ELF, ['p/x $cs', 'monitor status', 'detach']);
      expect(second.output).toContain('machine: paused');
      expect(printedValues(second.output)[0]).not.toBe('0xf000');
      expect(await fm.exited).toBe(0);
    } finally {
      await fm.kill();
    }
  }, 180_000);
});
