import { describe, expect, it } from 'vitest';
import { BareHost } from '../support/bare-host.js';

describe('translated code and host writes', () => {
  it('code rewritten by the host (DMA, loaders) is re-translated before it runs again', () => {
    const rom = new Uint8Array(128 * 1024).fill(0xf4);
    rom.set([0xea, 0x00, 0x10, 0x00, 0x00], 0x1fff0); // reset: jmp 0000:1000
    const host = new BareHost(rom);
    // 0x1000: mov al, 'A'; out 0xe9, al; hlt; jmp 0x1000
    host.memory.write(0x1000, Uint8Array.from([0xb0, 0x41, 0xe6, 0xe9, 0xf4, 0xeb, 0xf9]));
    host.run();
    expect(host.console).toBe('A');
    expect(host.cpu.state).toBe('halted');
    // Patch the immediate as a device would, then let the CPU go round the loop again.
    host.memory.write(0x1001, Uint8Array.from([0x42]));
    host.cpu.state = 'running';
    host.run();
    expect(host.console).toBe('AB');
  });
});
