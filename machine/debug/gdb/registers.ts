/**
 * The register file gdb sees: an i386:x86-64 target description (the same
 * layout QEMU's stub serves) plus the control registers, and how each one is
 * read from and written to an X86Cpu.
 *
 * Like QEMU, the layout never changes during a session (gdb cannot cope with
 * that): outside 64-bit code the general registers and RIP read as their low
 * 32 bits and R8-R15 as 0, so a 32-bit or 16-bit view shows what that code
 * can see. gdb's `set architecture i386` / `i8086` then disassembles it right.
 */
import type { X86Cpu } from '../../cpu/x86-cpu.js';
import { REG } from '../../cpu/unicorn/constants.js';
import { MSR } from '../../cpu/x86/registers.js';
import { cpuLocation } from '../../inspect/cpu-view.js';

/** Unicorn register ids not in REG (uc_x86_reg in unicorn/x86.h). */
const UC = { FPSW: 31, FPCW: 246, FPTAG: 247, MXCSR: 249, ST0: 114, XMM0: 122, FIP: 254, FCS: 255, FDP: 256, FDS: 257, FOP: 258 } as const;

export interface RegisterContext {
  cpu: X86Cpu;
  /** True in 64-bit code: registers read full width. */
  wide: boolean;
  /** CS base outside 64-bit code (the PC gdb sees is linear). */
  csBase: bigint;
}

export interface GdbRegister {
  name: string;
  bits: 32 | 64 | 80 | 128;
  type: string;
  feature: 'core' | 'sse' | 'segments' | 'system';
  group?: 'general' | 'float' | 'vector' | 'system';
  read(c: RegisterContext): bigint | Buffer;
  /** Absent: read-only (gdb gets an error when it writes). */
  write?(c: RegisterContext, value: bigint, bytes: Buffer): void;
}

export class RegisterWriteError extends Error {
  override name = 'RegisterWriteError';
}

const MASK32 = 0xffff_ffffn;
const GPRS = ['rax', 'rbx', 'rcx', 'rdx', 'rsi', 'rdi', 'rbp', 'rsp', 'r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15'] as const;
const GPR_IDS = [REG.RAX, REG.RBX, REG.RCX, REG.RDX, REG.RSI, REG.RDI, REG.RBP, REG.RSP, REG.R8, REG.R9, REG.R10, REG.R11, REG.R12, REG.R13, REG.R14, REG.R15];

function gpr(i: number): GdbRegister {
  const id = GPR_IDS[i]!;
  const name = GPRS[i]!;
  return {
    name,
    bits: 64,
    type: name === 'rsp' || name === 'rbp' ? 'data_ptr' : 'int64',
    feature: 'core',
    group: 'general',
    read: ({ cpu, wide }) => (wide ? cpu.engine.readReg(id) : i < 8 ? cpu.engine.readReg(id) & MASK32 : 0n),
    write: ({ cpu, wide }, v) => {
      if (!wide && i >= 8) throw new RegisterWriteError(`${name} does not exist outside 64-bit code`);
      cpu.engine.writeReg(id, wide ? v : v & MASK32);
    },
  };
}

/** i386 view: the low 32 bits, whatever the mode (an i386 gdb has no wider registers). */
function gpr32(i: number): GdbRegister {
  const id = GPR_IDS[i]!;
  const name = `e${GPRS[i]!.slice(1)}`;
  return {
    name,
    bits: 32,
    type: name === 'esp' || name === 'ebp' ? 'data_ptr' : 'int32',
    feature: 'core',
    group: 'general',
    read: ({ cpu }) => cpu.engine.readReg(id) & MASK32,
    // Only the low half: the upper half of a 64-bit register is left as it is.
    write: ({ cpu }, v) => cpu.engine.writeReg(id, (cpu.engine.readReg(id) & ~MASK32) | (v & MASK32)),
  };
}

function plain(name: string, bits: 32 | 64, id: number, feature: GdbRegister['feature'], type = bits === 64 ? 'int64' : 'int32', writable = true): GdbRegister {
  const mask = bits === 64 ? (1n << 64n) - 1n : MASK32;
  return {
    name,
    bits,
    type,
    feature,
    read: ({ cpu }) => cpu.engine.readReg(id) & mask,
    ...(writable ? { write: ({ cpu }: RegisterContext, v: bigint) => cpu.engine.writeReg(id, v & mask) } : {}),
  };
}

function segment(name: string, id: number): GdbRegister {
  // Loading a selector would need a descriptor load with its checks; gdb users read these.
  return { name, bits: 32, type: 'int32', feature: 'core', group: 'general', read: ({ cpu }) => cpu.engine.readReg(id) & 0xffffn };
}

function wideBytes(name: string, bits: 80 | 128, id: number, type: string, feature: GdbRegister['feature'], group: GdbRegister['group']): GdbRegister {
  return {
    name,
    bits,
    type,
    feature,
    ...(group ? { group } : {}),
    read: ({ cpu }) => cpu.engine.readRegBytes(id, bits / 8),
    write: ({ cpu }, _v, bytes) => cpu.engine.writeRegBytes(id, bytes),
  };
}

/** Control registers: writes go where the CPU's own page walker will see them, and drop stale translations. */
function control(name: string, id: number, flagsType: string): GdbRegister {
  return {
    name,
    bits: 64,
    type: flagsType,
    feature: 'system',
    group: 'general',
    read: ({ cpu }) => cpu.engine.readReg(id),
    write: ({ cpu }, v) => {
      const cr3 = cpu.engine.readReg(REG.CR3);
      cpu.engine.writeReg(id, v);
      // Unicorn before 2.1.4 also copies a CR2 write into CR3 (docs: shared notes).
      if (id === REG.CR2) cpu.engine.writeReg(REG.CR3, cr3);
      cpu.engine.flushTlb();
    },
  };
}

const PC: GdbRegister = {
    // Outside 64-bit code, the linear PC (CS.base + EIP): what breakpoints, symbols and
    // `x/i $pc` use. In real mode that differs from IP (QEMU shows IP, and gdb cannot then
    // match its breakpoints there); $cs holds the selector.
    name: 'rip',
    bits: 64,
    type: 'code_ptr',
    feature: 'core',
    group: 'general',
    read: ({ cpu, wide, csBase }) => (wide ? cpu.readRip() : (csBase + cpu.readRip()) & MASK32),
    write: ({ cpu, wide, csBase }, v) => cpu.engine.writeReg(REG.RIP, wide ? v : (v - csBase) & MASK32),
};

const EIP: GdbRegister = {
  ...PC,
  name: 'eip',
  bits: 32,
  read: (c) => (PC.read(c) as bigint) & MASK32,
  write: (c, v, b) => PC.write!({ ...c, wide: false, csBase: c.wide ? 0n : c.csBase }, v & MASK32, b),
};

/** eflags, the selectors and x87: the rest of gdb's i386 core feature, shared by both layouts. */
const CORE_TAIL: readonly GdbRegister[] = [
  { ...plain('eflags', 32, REG.EFLAGS, 'core', 'i386_eflags'), group: 'general' },
  segment('cs', REG.CS),
  segment('ss', REG.SS),
  segment('ds', REG.DS),
  segment('es', REG.ES),
  segment('fs', REG.FS),
  segment('gs', REG.GS),
  ...Array.from({ length: 8 }, (_, i) => wideBytes(`st${i}`, 80, UC.ST0 + i, 'i387_ext', 'core', 'float')),
  { ...plain('fctrl', 32, UC.FPCW, 'core'), group: 'float' },
  { ...plain('fstat', 32, UC.FPSW, 'core'), group: 'float' },
  { ...plain('ftag', 32, UC.FPTAG, 'core'), group: 'float' },
  { ...plain('fiseg', 32, UC.FCS, 'core'), group: 'float' },
  { ...plain('fioff', 32, UC.FIP, 'core'), group: 'float' },
  { ...plain('foseg', 32, UC.FDS, 'core'), group: 'float' },
  { ...plain('fooff', 32, UC.FDP, 'core'), group: 'float' },
  { ...plain('fop', 32, UC.FOP, 'core'), group: 'float' },
];

const xmm = (n: number): GdbRegister[] => [
  ...Array.from({ length: n }, (_, i) => wideBytes(`xmm${i}`, 128, UC.XMM0 + i, 'vec128', 'sse', 'vector')),
  { ...plain('mxcsr', 32, UC.MXCSR, 'sse', 'i386_mxcsr'), group: 'vector' },
];

const SYSTEM: readonly GdbRegister[] = [
  control('cr0', REG.CR0, 'x86_cr0'),
  control('cr2', REG.CR2, 'int64'),
  control('cr3', REG.CR3, 'int64'),
  control('cr4', REG.CR4, 'x86_cr4'),
  {
    name: 'efer',
    bits: 64,
    type: 'x86_efer',
    feature: 'system',
    group: 'general',
    read: ({ cpu }) => cpu.readControl().efer,
    write: ({ cpu }, v) => {
      cpu.engine.writeMsr(MSR.EFER, v);
      cpu.engine.flushTlb();
    },
  },
];

/** x86-64 gdb (the default) or i386 gdb (32-bit guests: `--gdb-arch i386`). */
export type GdbArch = 'x86-64' | 'i386';
export const GDB_ARCHES: readonly GdbArch[] = ['x86-64', 'i386'];

/** The x86-64 layout (QEMU's i386-64bit.xml order), plus the control registers. */
export const GDB_REGISTERS: readonly GdbRegister[] = [
  ...GPRS.map((_, i) => gpr(i)),
  PC,
  ...CORE_TAIL,
  ...xmm(16),
  { ...plain('fs_base', 64, REG.FS_BASE, 'segments'), group: 'general' },
  { ...plain('gs_base', 64, REG.GS_BASE, 'segments'), group: 'general' },
  ...SYSTEM,
];

/** The i386 layout (QEMU's i386 order): 32-bit registers, XMM0-7, plus the control registers. */
export const GDB_REGISTERS_I386: readonly GdbRegister[] = [...GPRS.slice(0, 8).map((_, i) => gpr32(i)), EIP, ...CORE_TAIL, ...xmm(8), ...SYSTEM];

export function registersFor(arch: GdbArch): readonly GdbRegister[] {
  return arch === 'i386' ? GDB_REGISTERS_I386 : GDB_REGISTERS;
}

export function registerContext(cpu: X86Cpu): RegisterContext {
  const loc = cpuLocation(cpu);
  const wide = loc.mode === 'long';
  return { cpu, wide, csBase: wide ? 0n : (loc.linearRip - cpu.readRip()) & MASK32 };
}

/** One register as gdb's target-byte-order hex, or `xx...` when it cannot be read (gdb shows <unavailable>). */
export function readRegisterHex(regs: readonly GdbRegister[], c: RegisterContext, index: number): string {
  const r = regs[index];
  if (!r) throw new RangeError(`register ${index}: there are ${regs.length}`);
  const bytes = r.bits / 8;
  try {
    const v = r.read(c);
    if (Buffer.isBuffer(v)) return Buffer.concat([v, Buffer.alloc(Math.max(0, bytes - v.length))]).subarray(0, bytes).toString('hex');
    const b = Buffer.alloc(bytes);
    let x = v;
    for (let i = 0; i < bytes; i++, x >>= 8n) b[i] = Number(x & 0xffn);
    return b.toString('hex');
  } catch {
    return 'xx'.repeat(bytes);
  }
}

export function registerBytes(regs: readonly GdbRegister[], index: number): number {
  const r = regs[index];
  if (!r) throw new RangeError(`register ${index}: there are ${regs.length}`);
  return r.bits / 8;
}

/** Writes one register from its little-endian bytes. */
export function writeRegister(regs: readonly GdbRegister[], c: RegisterContext, index: number, bytes: Buffer): void {
  const r = regs[index];
  if (!r) throw new RangeError(`register ${index}: there are ${regs.length}`);
  if (bytes.length !== r.bits / 8) throw new RegisterWriteError(`${r.name} takes ${r.bits / 8} bytes, got ${bytes.length}`);
  if (!r.write) throw new RegisterWriteError(`${r.name} is read-only here`);
  let v = 0n;
  for (let i = bytes.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(bytes[i]!);
  r.write(c, v, bytes);
}

const EFLAGS_TYPE = `
  <flags id="i386_eflags" size="4">
    <field name="CF" start="0" end="0"/><field name="" start="1" end="1"/><field name="PF" start="2" end="2"/>
    <field name="AF" start="4" end="4"/><field name="ZF" start="6" end="6"/><field name="SF" start="7" end="7"/>
    <field name="TF" start="8" end="8"/><field name="IF" start="9" end="9"/><field name="DF" start="10" end="10"/>
    <field name="OF" start="11" end="11"/><field name="NT" start="14" end="14"/><field name="RF" start="16" end="16"/>
    <field name="VM" start="17" end="17"/><field name="AC" start="18" end="18"/><field name="VIF" start="19" end="19"/>
    <field name="VIP" start="20" end="20"/><field name="ID" start="21" end="21"/>
  </flags>`;

/** Types are per feature in gdb: each feature defines what its registers use. */
const SSE_TYPES = `
  <flags id="i386_mxcsr" size="4">
    <field name="IE" start="0" end="0"/><field name="DE" start="1" end="1"/><field name="ZE" start="2" end="2"/>
    <field name="OE" start="3" end="3"/><field name="UE" start="4" end="4"/><field name="PE" start="5" end="5"/>
    <field name="DAZ" start="6" end="6"/><field name="IM" start="7" end="7"/><field name="DM" start="8" end="8"/>
    <field name="ZM" start="9" end="9"/><field name="OM" start="10" end="10"/><field name="UM" start="11" end="11"/>
    <field name="PM" start="12" end="12"/><field name="FZ" start="15" end="15"/>
  </flags>
  <vector id="v4f" type="ieee_single" count="4"/>
  <vector id="v2d" type="ieee_double" count="2"/>
  <vector id="v16i8" type="int8" count="16"/>
  <vector id="v8i16" type="int16" count="8"/>
  <vector id="v4i32" type="int32" count="4"/>
  <vector id="v2i64" type="int64" count="2"/>
  <union id="vec128">
    <field name="v4_float" type="v4f"/><field name="v2_double" type="v2d"/><field name="v16_int8" type="v16i8"/>
    <field name="v8_int16" type="v8i16"/><field name="v4_int32" type="v4i32"/><field name="v2_int64" type="v2i64"/>
    <field name="uint128" type="uint128"/>
  </union>`;

const SYSTEM_TYPES = `
  <flags id="x86_cr0" size="8">
    <field name="PE" start="0" end="0"/><field name="MP" start="1" end="1"/><field name="EM" start="2" end="2"/>
    <field name="TS" start="3" end="3"/><field name="ET" start="4" end="4"/><field name="NE" start="5" end="5"/>
    <field name="WP" start="16" end="16"/><field name="AM" start="18" end="18"/><field name="NW" start="29" end="29"/>
    <field name="CD" start="30" end="30"/><field name="PG" start="31" end="31"/>
  </flags>
  <flags id="x86_cr4" size="8">
    <field name="VME" start="0" end="0"/><field name="PVI" start="1" end="1"/><field name="TSD" start="2" end="2"/>
    <field name="DE" start="3" end="3"/><field name="PSE" start="4" end="4"/><field name="PAE" start="5" end="5"/>
    <field name="MCE" start="6" end="6"/><field name="PGE" start="7" end="7"/><field name="PCE" start="8" end="8"/>
    <field name="OSFXSR" start="9" end="9"/><field name="OSXMMEXCPT" start="10" end="10"/><field name="UMIP" start="11" end="11"/>
    <field name="LA57" start="12" end="12"/><field name="FSGSBASE" start="16" end="16"/><field name="PCIDE" start="17" end="17"/>
    <field name="OSXSAVE" start="18" end="18"/><field name="SMEP" start="20" end="20"/><field name="SMAP" start="21" end="21"/>
  </flags>
  <flags id="x86_efer" size="8">
    <field name="SCE" start="0" end="0"/><field name="LME" start="8" end="8"/><field name="LMA" start="10" end="10"/>
    <field name="NXE" start="11" end="11"/><field name="SVME" start="12" end="12"/>
  </flags>`;

const FEATURE_TYPES: Record<GdbRegister['feature'], string> = { core: EFLAGS_TYPE, sse: SSE_TYPES, segments: '', system: SYSTEM_TYPES };

const FEATURE_NAMES: Record<GdbRegister['feature'], string> = {
  core: 'org.gnu.gdb.i386.core',
  sse: 'org.gnu.gdb.i386.sse',
  segments: 'org.gnu.gdb.i386.segments',
  // Not a gdb feature: gdb shows its registers as they are (QEMU serves CR0-CR4/EFER the same way).
  system: 'org.firmament.x86.system',
};

/** The XML target description served as `target.xml` (qXfer:features:read). */
export function targetXml(arch: GdbArch = 'x86-64'): string {
  const all = registersFor(arch);
  const used = (['core', 'sse', 'segments', 'system'] as const).filter((f) => all.some((r) => r.feature === f));
  const features = used.map((f) => {
    const regs = all.map((r, i) => ({ r, i }))
      .filter(({ r }) => r.feature === f)
      .map(({ r, i }) => `    <reg name="${r.name}" bitsize="${r.bits}" type="${r.type}" regnum="${i}"${r.group ? ` group="${r.group}"` : ''}/>`)
      .join('\n');
    return `  <feature name="${FEATURE_NAMES[f]}">${FEATURE_TYPES[f]}\n${regs}\n  </feature>`;
  });
  return `<?xml version="1.0"?>\n<!DOCTYPE target SYSTEM "gdb-target.dtd">\n<target version="1.0">\n  <architecture>${arch === 'i386' ? 'i386' : 'i386:x86-64'}</architecture>\n${features.join('\n')}\n</target>\n`;
}
