/** The remote-protocol framing, byte for byte. */
import { describe, expect, it } from 'vitest';
import { checksum, escapeBinary, expandRunLength, framePacket, PacketReader, unescapeBinary } from '../../machine/debug/gdb/packets.js';
import { GDB_REGISTERS, GDB_REGISTERS_I386, targetXml } from '../../machine/debug/gdb/registers.js';

const feed = (r: PacketReader, s: string): ReturnType<PacketReader['feed']> => r.feed(Buffer.from(s, 'latin1'));

describe('gdb packet layer', () => {
  it('frames with a modulo-256 checksum and parses it back', () => {
    expect(framePacket('OK').toString()).toBe('$OK#9a');
    expect(checksum(Buffer.from('qSupported'))).toBe(0x37);
    const got = feed(new PacketReader(), '+$qSupported#37');
    expect(got).toEqual([{ kind: 'ack' }, { kind: 'packet', payload: Buffer.from('qSupported') }]);
  });

  it('rejects a bad checksum, non-hex checksum digits and a packet cut by a new $', () => {
    expect(feed(new PacketReader(), '$g#68')).toEqual([{ kind: 'bad', reason: 'checksum mismatch: packet says 68, data sums to 67' }]);
    expect(feed(new PacketReader(), '$g#zz')[0]).toMatchObject({ kind: 'bad', reason: "checksum 'zz' is not two hex digits" });
    const r = feed(new PacketReader(), '$m10,4$g#67');
    expect(r[0]).toMatchObject({ kind: 'bad' });
    expect(r[1]).toEqual({ kind: 'packet', payload: Buffer.from('g') });
  });

  it('reassembles packets split across chunks, and sees Ctrl-C and naks between them', () => {
    const r = new PacketReader();
    expect(feed(r, '$vCo')).toEqual([]);
    expect(feed(r, 'nt;c#a')).toEqual([]);
    expect(feed(r, '8\x03-')).toEqual([{ kind: 'packet', payload: Buffer.from('vCont;c') }, { kind: 'interrupt' }, { kind: 'nak' }]);
  });

  it('escapes and unescapes } # $ * (XOR 0x20)', () => {
    const raw = Buffer.from([0x7d, 0x23, 0x24, 0x2a, 0x41]);
    const esc = escapeBinary(raw);
    expect([...esc]).toEqual([0x7d, 0x5d, 0x7d, 0x03, 0x7d, 0x04, 0x7d, 0x0a, 0x41]);
    expect(unescapeBinary(esc)).toEqual(raw);
    expect(() => unescapeBinary(Buffer.from([0x41, 0x7d]))).toThrow(/escape character } at the end/);
    // A framed X packet carrying those bytes survives the reader.
    const framed = framePacket(Buffer.concat([Buffer.from('X1000,5:'), esc]));
    const got = new PacketReader().feed(framed);
    expect(got[0]!.kind).toBe('packet');
  });

  it('expands run-length encoding (count = byte - 29) and refuses a marker with nothing to repeat', () => {
    expect(expandRunLength(Buffer.from('0* ')).toString()).toBe('0000');
    expect(expandRunLength(Buffer.from('a*"b')).toString()).toBe('aaaaaab');
    expect(() => expandRunLength(Buffer.from('*#'))).toThrow(/without a byte to repeat/);
    expect(() => expandRunLength(Buffer.from('a*\x10'))).toThrow(/below 29/);
    const body = Buffer.from('0* ');
    expect(feed(new PacketReader(), `$0* #${checksum(body).toString(16)}`)).toEqual([{ kind: 'packet', payload: Buffer.from('0000') }]);
  });

  it('serves an i386:x86-64 description whose registers are numbered in g-packet order', () => {
    const xml = targetXml();
    expect(xml).toContain('<architecture>i386:x86-64</architecture>');
    for (const f of ['org.gnu.gdb.i386.core', 'org.gnu.gdb.i386.sse', 'org.gnu.gdb.i386.segments']) expect(xml).toContain(`<feature name="${f}">`);
    const regs = [...xml.matchAll(/<reg name="([^"]+)"[^>]*regnum="(\d+)"/g)].map((m) => [m[1], Number(m[2])]);
    expect(regs).toEqual(GDB_REGISTERS.map((r, i) => [r.name, i]));
    // gdb's amd64 core: 16 GPRs, rip, eflags, 6 selectors, 8 x87 + 8 control = 40 registers first.
    expect(GDB_REGISTERS.slice(0, 18).map((r) => r.name).join(' ')).toBe('rax rbx rcx rdx rsi rdi rbp rsp r8 r9 r10 r11 r12 r13 r14 r15 rip eflags');
    expect(GDB_REGISTERS[39]!.name).toBe('fop');
    expect(GDB_REGISTERS.map((r) => r.name)).toEqual(expect.arrayContaining(['cr0', 'cr2', 'cr3', 'cr4', 'efer', 'fs_base', 'gs_base']));
  });

  it('serves an i386 description for an i386 gdb: 32-bit registers, gdb core order, no 64-bit-only features', () => {
    const xml = targetXml('i386');
    expect(xml).toContain('<architecture>i386</architecture>');
    expect(xml).not.toContain('org.gnu.gdb.i386.segments');
    const regs = [...xml.matchAll(/<reg name="([^"]+)" bitsize="(\d+)"[^>]*regnum="(\d+)"/g)].map((m) => [m[1], Number(m[2]), Number(m[3])]);
    expect(regs.map(([n, , i]) => [n, i])).toEqual(GDB_REGISTERS_I386.map((r, i) => [r.name, i]));
    expect(regs.slice(0, 10).map(([n, bits]) => `${n}:${bits}`).join(' ')).toBe('eax:32 ebx:32 ecx:32 edx:32 esi:32 edi:32 ebp:32 esp:32 eip:32 eflags:32');
    // i386 core: 8 GPRs, eip, eflags, 6 selectors, 16 x87 registers = 32.
    expect(GDB_REGISTERS_I386[31]!.name).toBe('fop');
  });
});
