/** A Multiboot segment over the default MBI region keeps its bytes; the MBI moves (issue 11). */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { createGuestMachine } from '../../vmm/run-guests.js';
import { chooseMbiRegion } from '../../hypervisor/multiboot/mbi-placement.js';
import { parseMultibootImage, DEFAULT_MBI_REGION } from '../../hypervisor/multiboot/index.js';
import { markerGuest } from './support/tiny-guest.js';

async function runImage(image: Uint8Array): Promise<{ reason: string; code: number }> {
  const file = path.join(mkdtempSync(path.join(tmpdir(), 'fm-mbi-')), 'low.elf');
  writeFileSync(file, image);
  const { machine, hypervisor } = createGuestMachine([{ path: file, memBytes: 16 * 1024 * 1024, vcpus: 1 }], { pcpus: 1, pace: 'virtual' });
  try {
    return await machine.run({ timeoutMs: 60_000 });
  } finally {
    hypervisor.close();
    machine.close();
  }
}

describe('MBI placement', () => {
  it('a kernel loaded over 0x9000 keeps its bytes, and still gets a valid MBI in EBX', async () => {
    const exit = await runImage(markerGuest(DEFAULT_MBI_REGION.base, 0x5a));
    expect(exit).toMatchObject({ reason: 'debug-exit', code: (0x5a << 1) | 1 });
  });

  it('a kernel at 1 MiB leaves the MBI where QEMU puts it', () => {
    const plan = parseMultibootImage(markerGuest(0x100000, 1), 'high.elf', { ramSize: 16 << 20 });
    expect(chooseMbiRegion(plan.segments, 16 << 20, 'high.elf')).toEqual(DEFAULT_MBI_REGION);
    const low = parseMultibootImage(markerGuest(0x9000, 1), 'low.elf', { ramSize: 16 << 20 });
    const r = chooseMbiRegion(low.segments, 16 << 20, 'low.elf');
    for (const s of low.segments) expect(r.base >= s.paddr + s.memSize || r.base + r.size <= s.paddr).toBe(true);
  });

  it('no room at all is a clear error naming the file', () => {
    const seg = { paddr: 0, memSize: 2 << 20, fileBytes: new Uint8Array(0), fileOffset: 0x54, vaddr: 0n, programHeader: 0, flags: 7 };
    expect(() => chooseMbiRegion([seg], 2 << 20, 'fat.elf')).toThrow(/fat\.elf: offset 0x54: program header 0 leaves no 0x7000-byte gap/);
  });
});
