import { describe, expect, it } from 'vitest';
import { bitsView, buildCpuView, linearRip, rflagsView, segmentAttributes, GPR_NAMES, type CpuRawState } from '../../machine/inspect/cpu-view.js';
import { decodeCr0, decodeCr4, decodeEfer } from '../../machine/cpu/x86/registers.js';
import type { SegCache } from '../../machine/cpu/x86/segments.js';
import { parseAddress } from '../../machine/inspect/hex.js';
import { formatBreakpointSpec, parseBreakpointSpec, parseWatchSpec } from '../../machine/debug/specs.js';

const seg = (selector: number, base: bigint, limit: number, flags: number): SegCache => ({ selector, base, limit, flags });
const CODE64 = 0x00af9b00;
const CODE32 = 0x00cf9b00;
const DATA32 = 0x00cf9300;
const REAL = 0x00009300;

function raw(over: Partial<CpuRawState>): CpuRawState {
  const gprs = Object.fromEntries(GPR_NAMES.map((n, i) => [n, BigInt(i)])) as CpuRawState['gprs'];
  const segs = [seg(0, 0n, 0xffff, REAL), seg(0xf000, 0xf0000n, 0xffff, REAL), seg(0, 0n, 0xffff, REAL), seg(0, 0n, 0xffff, REAL), seg(0, 0n, 0xffff, REAL), seg(0, 0n, 0xffff, REAL), seg(0, 0n, 0, 0x8200), seg(0, 0n, 0xffff, 0x8b00), seg(0, 0n, 0xffff, 0), seg(0, 0n, 0x3ff, 0)];
  return { index: 0, apicId: 0, runState: 'running', gprs, rip: 0xfff0n, rflags: 0x2, segs, cr0: 0x60000010n, cr2: 0n, cr3: 0n, cr4: 0n, efer: 0n, ...over };
}

describe('RFLAGS and control-register decoders', () => {
  it('names every set RFLAGS bit and the IOPL field', () => {
    const v = rflagsView(0x0000_3246); // ZF PF IF, IOPL 3, bit 1 reserved
    expect(v.set).toEqual(['PF', 'ZF', 'IF']);
    expect(v.iopl).toBe(3);
    expect(v.value).toBe('0x00003246');
    expect(rflagsView(0x4_0d95).set).toEqual(['CF', 'PF', 'AF', 'SF', 'TF', 'DF', 'OF', 'AC']);
  });

  it('decodes CR0, CR4 and EFER bits by name', () => {
    expect(bitsView(0x8000_0033n, decodeCr0).set).toEqual(['PE', 'MP', 'ET', 'NE', 'PG']);
    expect(bitsView(0x620n, decodeCr4).set).toEqual(['PAE', 'OSFXSR', 'OSXMMEXCPT']);
    expect(bitsView(0xd01n, decodeEfer)).toEqual({ value: '0x0000000000000d01', set: ['SCE', 'LME', 'LMA', 'NXE'] });
  });

  it('describes segment descriptors: code width, data access, system types, DPL, present', () => {
    expect(segmentAttributes(CODE64, 'long')).toBe('code64 DPL0 P');
    expect(segmentAttributes(CODE32 | (3 << 13), 'protected')).toBe('code32 DPL3 P');
    expect(segmentAttributes(DATA32 & ~(1 << 9), 'protected')).toBe('data RO DPL0 P');
    expect(segmentAttributes(0x8b00, 'protected')).toBe('tss-busy DPL0 P');
    expect(segmentAttributes(0x9300 & ~(1 << 15), 'protected')).toBe('data RW DPL0 NP');
    expect(segmentAttributes(REAL, 'real')).toBe('real P');
  });
});

describe('CPU view modes', () => {
  it('real mode: linear RIP adds CS.base, 16-bit code, CPL 0', () => {
    const v = buildCpuView(raw({}));
    expect(v.mode).toBe('real');
    expect(v.codeBits).toBe(16);
    expect(v.linearRip).toBe('0x00000000000ffff0');
    expect(v.segments.find((s) => s.name === 'CS')).toMatchObject({ selector: '0xf000', base: '0x00000000000f0000', limit: '0x0000ffff' });
    expect(v.control.paging).toBe('none');
    expect(v.gprs.map((g) => g.name)).toEqual([...GPR_NAMES]);
  });

  it('protected mode: CS.D selects 32-bit code; CPL comes from CS.RPL', () => {
    const r = raw({ cr0: 0x11n, rip: 0x1000n });
    const segs = [...r.segs];
    segs[1] = seg(0x1b, 0x10000n, 0xffffffff, CODE32 | (3 << 13));
    const v = buildCpuView({ ...r, segs });
    expect(v).toMatchObject({ mode: 'protected', codeBits: 32, cpl: 3, linearRip: '0x0000000000011000' });
  });

  it('long mode needs EFER.LMA and CS.L; CS.L clear is compatibility mode', () => {
    const r = raw({ cr0: 0x8000_0011n, cr4: 0x20n, efer: 0x500n, rip: 0xffff_8000_0000_1000n });
    const segs = [...r.segs];
    segs[1] = seg(0x8, 0x1234n, 0xffffffff, CODE64);
    const long = buildCpuView({ ...r, segs });
    expect(long).toMatchObject({ mode: 'long', codeBits: 64, linearRip: '0xffff800000001000' });
    expect(long.control.paging).toBe('4-level');
    segs[1] = seg(0x10, 0n, 0xffffffff, CODE32);
    expect(buildCpuView({ ...r, rip: 0x2000n, segs })).toMatchObject({ mode: 'compatibility', codeBits: 32 });
  });

  it('linear RIP wraps at 4 GiB outside long mode', () => {
    expect(linearRip('protected', 0xffff_f000n, 0x2000n)).toBe(0x1000n);
    expect(linearRip('long', 0xffff_f000n, 0x2000n)).toBe(0x2000n);
  });
});

describe('addresses and debugger specs', () => {
  it('parses addresses as users type them', () => {
    expect(parseAddress('0xFFFF_8000_0000_0000')).toBe(0xffff_8000_0000_0000n);
    expect(parseAddress('4K')).toBe(4096n);
    expect(parseAddress(' 1234 ')).toBe(1234n);
    expect(() => parseAddress('zz')).toThrow(/not an address/);
  });

  it('parses breakpoint specs: linear, physical, POST code by number or name', () => {
    expect(parseBreakpointSpec('0xfff0')).toEqual({ kind: 'linear', address: 0xfff0n });
    expect(parseBreakpointSpec('lin:0x100000')).toEqual({ kind: 'linear', address: 0x100000n });
    expect(parseBreakpointSpec('phys 0x100000')).toEqual({ kind: 'physical', address: 0x100000n });
    expect(parseBreakpointSpec('post 0x33')).toEqual({ kind: 'post', code: 0x33 });
    expect(parseBreakpointSpec('post:memtest_pass')).toEqual({ kind: 'post', code: 0x33 });
    expect(formatBreakpointSpec({ kind: 'post', code: 0x5f })).toBe('post 0x5F HANDOFF');
    expect(() => parseBreakpointSpec('post NO_SUCH_CODE')).toThrow(/not a POST code/);
    expect(() => parseBreakpointSpec('disk 0x1')).toThrow(/unknown breakpoint kind/);
  });

  it('parses watch specs with a default length', () => {
    expect(parseWatchSpec('0x8000')).toEqual({ address: 0x8000n, length: 8 });
    expect(parseWatchSpec('0x8000+256')).toEqual({ address: 0x8000n, length: 256 });
    expect(parseWatchSpec('0x8000 0x10')).toEqual({ address: 0x8000n, length: 16 });
    expect(() => parseWatchSpec('0x8000+0')).toThrow(/1 byte to 1 MiB/);
  });
});
