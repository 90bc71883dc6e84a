/**
 * Tiny Multiboot guests made in JS (no toolchain): an a.out-kludge header
 * loading the file at 1 MiB, then 32-bit code. For hostile-input tests.
 */
const LOAD = 0x100000;
const HEADER_BYTES = 32;

/** A Multiboot v1 image (a.out kludge) whose entry is `code`, loaded right after the header. */
export function multibootImage(code: readonly number[], load = LOAD): Uint8Array {
  const img = new Uint8Array(HEADER_BYTES + code.length);
  const dv = new DataView(img.buffer);
  const magic = 0x1badb002;
  const flags = 0x00010000;
  dv.setUint32(0, magic, true);
  dv.setUint32(4, flags, true);
  dv.setUint32(8, (-(magic + flags)) >>> 0, true);
  dv.setUint32(12, load, true); // header_addr
  dv.setUint32(16, load, true); // load_addr
  dv.setUint32(20, 0, true); // load_end_addr: the whole file
  dv.setUint32(24, 0, true); // bss_end_addr: none
  dv.setUint32(28, load + HEADER_BYTES, true); // entry_addr
  img.set(code, HEADER_BYTES);
  return img;
}

const u32 = (n: number): number[] => [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff];
const MOV_DX = (port: number): number[] => [0x66, 0xba, port & 0xff, port >> 8];
const MOV_AL = (v: number): number[] => [0xb0, v & 0xff];
const OUT_DX_AL = 0xee;
const exitWith = (value: number): number[] => [...MOV_DX(0xf4), ...MOV_AL(value), OUT_DX_AL, 0xf4];

/** Writes `bytes` to COM1, then exits through isa-debug-exit with `exitValue` (status (v << 1) | 1). */
export function serialBytesGuest(bytes: readonly number[], exitValue = 0): Uint8Array {
  return multibootImage([...MOV_DX(0x3f8), ...bytes.flatMap((b) => [...MOV_AL(b), OUT_DX_AL]), ...exitWith(exitValue)]);
}

/** Writes `count` copies of `byte` to COM1 in a loop, then exits with `exitValue`. */
export function chattyGuest(count: number, byte = 0x41, exitValue = 0): Uint8Array {
  // mov dx,0x3f8; mov ecx,count; top: mov al,byte; out dx,al; loop top
  return multibootImage([...MOV_DX(0x3f8), 0xb9, ...u32(count), ...MOV_AL(byte), OUT_DX_AL, 0xe2, 0xfb, ...exitWith(exitValue)]);
}

/**
 * Loaded at `load`: exits with its own last byte (`marker`) read back from memory when EBX
 * points to an MBI with QEMU's flags (low byte 0x4f), else with 0.
 */
export function markerGuest(load: number, marker: number): Uint8Array {
  const markerAt = (codeLen: number): number => load + HEADER_BYTES + codeLen - 1;
  const body = (addr: number): number[] => [0x8a, 0x03, 0x3c, 0x4f, 0x75, 0x07, 0xa0, ...u32(addr), 0xeb, 0x02, 0xb0, 0x00, ...MOV_DX(0xf4), OUT_DX_AL, 0xf4, marker];
  return multibootImage(body(markerAt(body(0).length)), load);
}
