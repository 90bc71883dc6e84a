import { describe, expect, it } from 'vitest';
import { ioBitmapFault, type LinearRead, type TaskRegister } from '../../machine/cpu/x86/io-permission.js';

/** A 64-bit TSS at linear 0x1000 whose bitmap (at TSS+0x68) allows ports 0x60 and 0x64-0x67. */
function tss(limit = 0x68 + 0x20): { tr: TaskRegister; read: LinearRead } {
  const mem = new Uint8Array(0x2000);
  mem[0x1000 + 0x66] = 0x68;
  mem.fill(0xff, 0x1068, 0x1068 + 0x21);
  mem[0x1068 + 0x60 / 8] = 0b0000_1110; // bit n = port 0x60 + n: 0x60 and 0x64-0x67 clear
  const read: LinearRead = (lin, n) => (lin + BigInt(n) <= 0x2000n ? mem.slice(Number(lin), Number(lin) + n) : { pageFault: 0, cr2: lin });
  return { tr: { base: 0x1000n, limit, flags: 0x8b00 /* P, busy 64-bit TSS */ }, read };
}

describe('I/O permission bitmap (SDM Vol. 1 19.5.2)', () => {
  it('allows an access only when every bit for its width is clear', () => {
    const { tr, read } = tss();
    expect(ioBitmapFault(tr, read, 0x60, 1)).toBeNull();
    expect(ioBitmapFault(tr, read, 0x64, 4)).toBeNull();
    expect(ioBitmapFault(tr, read, 0x61, 1)).toMatchObject({ vector: 13, errorCode: 0 });
    expect(ioBitmapFault(tr, read, 0x60, 2)).toMatchObject({ vector: 13, reason: expect.stringContaining('denied by the I/O permission bitmap') });
    expect(ioBitmapFault(tr, read, 0x65, 4)).toMatchObject({ vector: 13 }); // 0x68 is denied
  });

  it('refuses when the two bitmap bytes reach past the TSS limit', () => {
    const { tr, read } = tss();
    // Port 0xf8's byte is the last one (TSS+0x87); with the limit 0x88 both bytes fit.
    expect(ioBitmapFault(tr, read, 0xf8, 1)).toMatchObject({ vector: 13, reason: expect.stringContaining('denied by the I/O permission bitmap') });
    expect(ioBitmapFault({ ...tr, limit: 0x87 }, read, 0xf8, 1)).toMatchObject({ reason: expect.stringContaining('beyond the TSS limit') });
    expect(ioBitmapFault(tr, read, 0x100, 1)).toMatchObject({ reason: expect.stringContaining('beyond the TSS limit') });
  });

  it('refuses without a valid TSS, and reports a #PF when the TSS is not readable', () => {
    const { tr, read } = tss();
    expect(ioBitmapFault({ ...tr, flags: 0x8200 }, read, 0x60, 1)).toMatchObject({ vector: 13, reason: expect.stringContaining('no valid 32/64-bit TSS') }); // an LDT
    expect(ioBitmapFault({ ...tr, flags: 0x0b00 }, read, 0x60, 1)).toMatchObject({ vector: 13 }); // not present
    expect(ioBitmapFault({ ...tr, limit: 0x66 }, read, 0x60, 1)).toMatchObject({ vector: 13 }); // limit < 103
    expect(ioBitmapFault({ ...tr, base: 0x1ff0n }, read, 0x60, 1)).toMatchObject({ vector: 14, cr2: 0x2056n });
  });
});
