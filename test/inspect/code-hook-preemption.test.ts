/**
 * With any code hook installed (a breakpoint anywhere), Unicorn 2.1 leaves RIP stale when
 * the slice hook stops it before a block; X86Cpu puts RIP back on that block. Without that,
 * the firmware's memory test (tight chained loops, preempted many times) restarted a
 * function with its stack already pushed and faulted at RIP 0.
 */
import { expect, it } from 'vitest';
import { firmwareRig } from './support.js';

it('a breakpoint on an address never reached does not disturb preempted code: POST passes the memory test', async () => {
  const r = firmwareRig({ paused: true });
  try {
    r.d.addBreakpoint({ kind: 'linear', address: 0xdead0000n });
    r.d.addBreakpoint({ kind: 'post', code: 0x40 });
    const stop = r.nextStop();
    r.d.resume();
    const s = await stop;
    expect(s).toMatchObject({ reason: 'post-code', code: '0x40' });
    expect(r.m.serial).toContain('[POST 0x33] memory test passed');
    expect(r.m.serial).not.toContain('unexpected exception');
  } finally {
    await r.close();
  }
}, 120_000);
