// Minimal typings for the parts of `elfy` (CommonJS, no bundled types) that
// the Multiboot loader uses. elfy reads 64-bit fields into JavaScript numbers
// (inexact above 2^53) and validates almost nothing: callers must check.
declare module 'elfy' {
  interface ElfyHeader {
    class: string; // '32' | '64'
    endian: string; // 'lsb' | 'msb'
    osabi: string | undefined;
    abiversion: string | undefined;
    type: string | undefined; // 'exec', 'dyn', ... or undefined for unknown values
    machine: string | undefined; // '386', 'amd64', ...
    version: number;
    entry: number;
    phoff: number;
    shoff: number;
    flags: number;
    ehsize: number;
    phentsize: number;
    phnum: number;
    shentsize: number;
    shnum: number;
    shstrndx: number;
  }

  interface ElfyProgram {
    type: string | undefined; // 'load', 'dynamic', 'interp', ... or undefined
    offset: number;
    vaddr: number;
    paddr: number;
    filesz: number;
    memsz: number;
    flags: Record<string, boolean>;
    align: number;
    data: Buffer;
  }

  class Parser {
    constructor();
    execute(buf: Buffer): ElfyHeader & { body: { programs: ElfyProgram[]; sections: unknown[] } };
    parseHeader(buf: Buffer): ElfyHeader;
    parsePrograms(buf: Buffer, header: ElfyHeader): ElfyProgram[];
  }

  const elfy: {
    Parser: typeof Parser;
    parse(buf: Buffer): ReturnType<Parser['execute']>;
    constants: Record<string, Record<number, string>>;
  };
  export = elfy;
}
