/** The stub's packet handling against a real (paused) machine, without gdb: acks, no-ack mode, bad packets. */
import { afterEach, describe, expect, it } from 'vitest';
import { createBootMachine } from '../../vmm/boot.js';
import type { PcMachine } from '../../machine/platform/pc.js';
import { GdbStub } from '../../machine/debug/gdb/stub.js';
import { machineTarget } from '../../machine/debug/gdb/target.js';
import { framePacket } from '../../machine/debug/gdb/packets.js';

let machine: PcMachine | null = null;
afterEach(() => {
  machine?.close();
  machine = null;
});

function rig(): { stub: GdbStub; out: string[]; send(p: string): string } {
  machine = createBootMachine({ memBytes: 16 * 1024 * 1024, cpus: 2, faults: [], pace: 'virtual' });
  machine.pause();
  const out: string[] = [];
  const stub = new GdbStub(machineTarget(machine), { send: (b) => out.push(b.toString('latin1')), end: () => out.push('<end>') });
  return {
    stub,
    out,
    send(p) {
      out.length = 0;
      stub.receive(framePacket(p));
      return out.join('');
    },
  };
}

describe('gdb stub packets', () => {
  it('acks each packet until no-ack mode, then sends bare replies; a bad packet gets a nak only while acking', () => {
    const r = rig();
    expect(r.send('qSupported:multiprocess+;swbreak+;xmlRegisters=i386')).toMatch(/^\+\$PacketSize=4000;qXfer:features:read\+;QStartNoAckMode\+;swbreak\+;hwbreak\+;vContSupported\+#[0-9a-f]{2}$/);
    r.out.length = 0;
    r.stub.receive(Buffer.from('$g#00'));
    expect(r.out).toEqual(['-']);
    expect(r.send('QStartNoAckMode')).toBe('+$OK#9a');
    expect(r.send('qC')).toBe(framePacket('QC1').toString());
    r.out.length = 0;
    r.stub.receive(Buffer.from('$qC#00'));
    expect(r.out).toEqual([]);
  });

  it('lists CPUs as threads, reads the reset vector through the CPU, and answers unknown packets empty', () => {
    const r = rig();
    expect(r.send('qfThreadInfo')).toBe(`+${framePacket('m1,2').toString()}`);
    expect(r.send('qsThreadInfo')).toBe('+$l#6c');
    // 0xffff0: the reset vector's near jmp (e9) in the ROM alias.
    expect(r.send('mffff0,1')).toBe(`+${framePacket('e9').toString()}`);
    expect(r.send('p10')).toMatch(/^\+\$f0ff0f0000000000#/);
    expect(r.send('Hg2')).toBe('+$OK#9a');
    expect(r.send('qThreadExtraInfo,2')).toBe(`+${framePacket(Buffer.from('cpu1 real wait-for-sipi').toString('hex')).toString()}`);
    expect(r.send('Hg9')).toBe(`+${framePacket('E22').toString()}`);
    expect(r.send('g')).toMatch(/^\+\$0{16}/);
    expect(r.send('vFoo')).toBe('+$#00');
    expect(r.send('m10,zz')).toBe(`+${framePacket('E01').toString()}`);
  });

  it('inserts and removes code breakpoints without writing memory', () => {
    const r = rig();
    const before = machine!.memory.read(0xfe000, 16);
    expect(r.send('Z0,fe000,1')).toBe('+$OK#9a');
    expect(r.stub.target.debugger.listBreakpoints().map((b) => b.text)).toEqual(['lin 0xfe000']);
    expect(machine!.memory.read(0xfe000, 16)).toEqual(before);
    expect(r.send('z0,fe000,1')).toBe('+$OK#9a');
    expect(r.stub.target.debugger.listBreakpoints()).toEqual([]);
    // Watchpoints of unknown types are not offered; a zero-length one is an error.
    expect(r.send('Z5,1000,4')).toBe('+$#00');
    expect(r.send('Z3,1000,0')).toMatch(/^\+\$E/);
  });
});
