/** Real gdb against guests under the hypervisor: `run --gdb` and `boot --guest ... --gdb-vm`. */
import type { ChildProcess } from 'node:child_process';
import { writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { guestElf, printedValues, runGdb, startFirmament } from './support.js';

describe('gdb on a VM under the hypervisor', () => {
  it('breaks in guest_main, a watchpoint on a guest variable sees its writes, the guest exit is a stop reason', async () => {
    const fm = await startFirmament(['run', guestElf('timer', false), '--gdb', 'tcp::0', '--paused', '--clock', 'virtual']);
    try {
      const r = await runGdb(fm.port, guestElf('timer'), [
        'info threads',
        'break guest_main', 'continue', 'info registers rip cr0 cr4 efer',
        'watch *(unsigned int *)&pit_count', 'continue', 'continue', 'p *(unsigned int *)&pit_count',
        'delete', 'monitor translate 0xffffffff80110000', 'continue',
      ]);
      expect(r.output).toMatch(/Thread 1 \(vm:timer\/vcpu0 protected running\) 0x0+10000c in _start/);
      expect(r.output).toMatch(/Breakpoint 1, 0xffffffff[0-9a-f]+ in guest_main/);
      expect(r.output).toMatch(/cr0\s+0xe0010011\s+\[ PE ET WP NW CD PG \]/);
      expect(r.output).toMatch(/efer\s+0x500\s+\[ LME LMA \]/);
      expect(r.output).toMatch(/Hardware watchpoint 2: \*\(unsigned int \*\)&pit_count\s+Old value = 0\s+New value = 1/);
      expect(r.output).toMatch(/Old value = 1\s+New value = 2/);
      expect(printedValues(r.output)).toEqual(['2']);
      // GVA -> GPA through the guest's tables, then GPA -> HPA through the VM's EPT.
      expect(r.output).toMatch(/guest-physical 0x0+110000 through EPT/);
      expect(r.output).toMatch(/-> host-physical 0x[0-9a-f]+/);
      // isa-debug-exit 0 -> status 1, as QEMU's; gdb sees the exit.
      expect(r.output).toContain('[Inferior 1 (Remote target) exited with code 01]');
      expect(await fm.exited).toBe(1);
    } finally {
      await fm.kill();
    }
  }, 180_000);

  it('watchpoints are exact: a write, read or access watch stops right after the instruction, in the function that made it', async () => {
    const fm = await startFirmament(['run', guestElf('timer', false), '--gdb', 'tcp::0', '--paused', '--clock', 'virtual']);
    try {
      const r = await runGdb(fm.port, guestElf('timer'), [
        'break guest_main', 'continue', 'delete',
        'watch *(unsigned int *)&pit_count', 'continue', 'bt 1', 'x/i $pc', 'delete',
        'rwatch *(unsigned int *)&target', 'continue', 'bt 1', 'x/i $pc', 'delete',
        'awatch *(unsigned int *)&lapic_count', 'continue', 'bt 1', 'x/i $pc', 'delete',
        'kill',
      ]);
      // Each stop is in the function that made the access, on the instruction after it: the
      // instruction at PC no longer names the variable (a stop at the end of a block or a
      // quantum would be somewhere else, e.g. in the HLT loop of idle_until).
      const stops = [...r.output.matchAll(/\n#0\s+0x[0-9a-f]+ in (\w+) \(\)/g)].map((m) => m[1]);
      expect(stops).toEqual(['pit_tick', 'pit_tick', 'guest_main']);
      expect(r.output).toMatch(/Hardware watchpoint 2: \*\(unsigned int \*\)&pit_count\s+Old value = 0\s+New value = 1/);
      expect(r.output).toMatch(/Hardware read watchpoint 3: \*\(unsigned int \*\)&target\s+Value = 20/);
      expect(r.output).toMatch(/Hardware access \(read\/write\) watchpoint 4: \*\(unsigned int \*\)&lapic_count\s+Value = 0/);
      const atPc = [...r.output.matchAll(/=> 0x[0-9a-f]+ <(\w+)\+\d+>:\s+([^\n]*)/g)].map((m) => `${m[1]}: ${m[2]}`);
      expect(atPc).toHaveLength(3);
      for (const line of atPc) expect(line).not.toMatch(/<(pit_count|target|lapic_count)>/);
    } finally {
      await fm.kill();
    }
  }, 180_000);

  it('Ctrl-C interrupts a running guest, and continue goes on', async () => {
    // idle mode: 100 s of PIT time in HLT: running until we stop it.
    // The packet trace tells when the stub has the continue (gdb prints "Continuing." before sending it).
    const fm = await startFirmament(['run', guestElf('timer', false), '--cmdline', 'idle=100000', '--gdb', 'tcp::0'], { FIRMAMENT_GDB_TRACE: '1' });
    try {
      let sent = 0;
      let gdbChild: ChildProcess | null = null;
      const poll = setInterval(() => {
        const resumed = (fm.stderr().match(/gdb -> \$vCont;c/g) ?? []).length;
        if (gdbChild && resumed > sent) {
          sent = resumed;
          gdbChild.kill('SIGINT');
        }
      }, 50);
      const r = await runGdb(fm.port, guestElf('timer'), ['continue', 'p 1', 'continue', 'p 2', 'kill'], (_text, gdb) => {
        gdbChild = gdb;
      }).finally(() => clearInterval(poll));
      expect((r.output.match(/received signal SIGINT/g) ?? []).length).toBe(2);
      expect(printedValues(r.output)).toEqual(['1', '2']);
      expect(r.output).toContain('[Inferior 1 (Remote target) killed]');
    } finally {
      await fm.kill();
    }
  }, 180_000);

  it('breaks in one guest under the full boot while another VM keeps running (--gdb-vm)', async () => {
    const fm = await startFirmament(['boot', '--guest', guestElf('timer', false), '--guest', guestElf('hello', false), '--gdb', 'tcp::0', '--gdb-vm', 'timer', '--paused', '--clock', 'virtual']);
    const dir = mkdtempSync(path.join(tmpdir(), 'fm-gdb-'));
    const marker = path.join(dir, 'hello-done');
    // hello's last line on firmament's stderr: the test drops a marker file gdb's shell waits for.
    const poll = setInterval(() => {
      if (/hello: goodbye/.test(fm.stderr())) writeFileSync(marker, '');
    }, 50);
    try {
      const r = await runGdb(fm.port, guestElf('timer'), [
        'break guest_main', 'continue', 'p/x $pc == (long)&guest_main',
        // While timer is held here, hello runs to its end.
        `shell while [ ! -e ${marker} ]; do sleep 0.1; done`,
        'p/x $pc == (long)&guest_main', 'monitor status', 'delete', 'continue',
      ]);
      expect(r.output).toMatch(/Breakpoint 1, 0xffffffff[0-9a-f]+ in guest_main/);
      expect(printedValues(r.output)).toEqual(['0x1', '0x1']);
      expect(r.output).toMatch(/vm:timer: paused/);
      expect(r.output).toContain('[Inferior 1 (Remote target) exited with code 01]');
      expect(await fm.exited).toBe(0);
      // hello ran while timer was stopped in gdb: its whole transcript is there.
      expect(fm.stderr()).toMatch(/hello: goodbye/);
    } finally {
      clearInterval(poll);
      rmSync(dir, { recursive: true, force: true });
      await fm.kill();
    }
  }, 180_000);

  it('an i386 gdb (32-bit guest, --gdb-arch i386): a triple fault is a SIGSEGV stop with the state kept, then the end', async () => {
    const fm = await startFirmament(['run', guestElf('crash', false), '--gdb', 'tcp::0', '--gdb-arch', 'i386', '--paused', '--clock', 'virtual']);
    try {
      const r = await runGdb(fm.port, guestElf('crash', false), ['p/x $eax', 'p/x $eip', 'continue', 'p $pc > (long)&guest_main', 'info registers cr0 efer', 'continue']);
      // Multiboot entry: EAX holds the loader magic; EIP the ELF entry.
      expect(printedValues(r.output)).toEqual(['0x2badb002', '0x10000c', '1']);
      expect(r.output).toMatch(/Program received signal SIGSEGV, Segmentation fault\.\s+0x[0-9a-f]+ in guest_main/);
      expect(r.output).toMatch(/cr0\s+0x60000011\s+\[ PE ET NW CD \]/);
      expect(r.output).toContain('Program terminated with signal SIGSEGV');
      expect(fm.stderr()).toContain('triple fault');
      // QEMU with -no-reboot exits 0 on a triple fault; so does run.
      expect(await fm.exited).toBe(0);
    } finally {
      await fm.kill();
    }
  }, 180_000);

  it('an SMP guest on 2 host CPUs: breakpoints and watchpoints follow the vCPUs wherever the scheduler runs them', async () => {
    const fm = await startFirmament(['run', guestElf('smp', false), '--vcpus', '2', '--cpus', '2', '--gdb', 'tcp::0', '--paused', '--clock', 'virtual']);
    try {
      const r = await runGdb(fm.port, guestElf('smp'), ['break ap_entry64', 'continue', 'delete', 'watch *(unsigned long *)&counter', 'continue', 'bt 1', 'delete', 'kill']);
      // Both hooks sat on every host engine; before, the AP's breakpoint hooked only the engine it was parked on.
      expect(r.output).toMatch(/Thread 2 hit Breakpoint 1, 0x[0-9a-f]+ in ap_entry64/);
      expect(r.output).toMatch(/Hardware watchpoint 2: \*\(unsigned long \*\)&counter\s+Old value = \d+\s+New value = \d+/);
      expect(r.output).toMatch(/#0\s+0x[0-9a-f]+ in \w+ \(\)/);
    } finally {
      await fm.kill();
    }
  }, 180_000);

  it('an SMP guest: each vCPU is a thread; thread N selects it and stepi steps only it', async () => {
    const fm = await startFirmament(['run', guestElf('smp', false), '--vcpus', '2', '--gdb', 'tcp::0', '--paused', '--clock', 'virtual']);
    try {
      const r = await runGdb(fm.port, guestElf('smp'), [
        'break ap_entry64', 'continue', 'info threads', 'p $_thread',
        'delete', 'thread 1', 'p/x $pc', 'thread 2', 'p/x $pc', 'stepi', 'p/x $pc', 'thread 1', 'p/x $pc', 'kill',
      ]);
      expect(r.output).toMatch(/Thread 2 \(vm:smp\/vcpu1 long running\)/);
      expect(r.output).toMatch(/Thread 1 \(vm:smp\/vcpu0 /);
      const [thread, bspBefore, apBefore, apAfter, bspAfter] = printedValues(r.output);
      expect(thread).toBe('2');
      expect(BigInt(apAfter!)).toBeGreaterThan(BigInt(apBefore!));
      // The step ran vCPU 1 alone: vCPU 0 is where it was.
      expect(bspAfter).toBe(bspBefore);
    } finally {
      await fm.kill();
    }
  }, 180_000);
});
