import { describe, expect, it } from 'vitest';
import { TCG_BUFFER_BYTES, UnicornEngine } from '../../machine/cpu/unicorn/engine.js';
import { REG, UC_MODE_64, UC_PROT_ALL } from '../../machine/cpu/unicorn/constants.js';

describe('Unicorn engine set-up', () => {
  it("uses a 32 MiB translated-code buffer, not Unicorn's 1 GiB (every TB flush memsets all of it)", () => {
    const e = new UnicornEngine(UC_MODE_64);
    try {
      expect(e.tcgBufferSize()).toBe(TCG_BUFFER_BYTES);
    } finally {
      e.close();
    }
  });

  it('runs correctly through more code than the buffer holds (QEMU flushes and goes on)', () => {
    const e = new UnicornEngine(UC_MODE_64);
    try {
      // 1M distinct `add [rbx], eax` (about 100 MiB of translated code), then HLT.
      const count = 1 << 20;
      const ram = new Uint8Array(new SharedArrayBuffer(4 << 20));
      e.mapHost(0, ram, UC_PROT_ALL);
      for (let i = 0; i < count; i++) ram.set([0x01, 0x03], 0x1000 + 2 * i);
      ram[0x1000 + 2 * count] = 0xf4;
      const sum = 0x3f_f000;
      e.writeReg(REG.RAX, 3);
      e.writeReg(REG.RBX, sum);
      expect(e.start(0x1000n)).toBe(0);
      expect(new DataView(ram.buffer).getUint32(sum, true)).toBe(3 * count);
      expect(e.readReg(REG.RIP)).toBe(BigInt(0x1000 + 2 * count + 1));
    } finally {
      e.close();
    }
  });
});
