/**
 * iced-x86, loaded on first use. The package instantiates its WebAssembly decoder when it is
 * loaded (100-200 ms of start-up), and most runs never decode an instruction: only the
 * disassembler, a fault's linear address and a dropped write need it.
 */
import { createRequire } from 'node:module';
import type * as IcedX86 from 'iced-x86';

export type { IcedX86 };

let loaded: typeof IcedX86 | undefined;

export function icedX86(): typeof IcedX86 {
  loaded ??= createRequire(import.meta.url)('iced-x86') as typeof IcedX86;
  return loaded;
}
