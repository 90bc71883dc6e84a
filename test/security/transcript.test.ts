/** A chatty guest must not grow the emulator's memory without end (issue 11). */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { appendTranscript, TRANSCRIPT_KEEP_BYTES } from '../../machine/devices/transcript.js';
import { createGuestMachine } from '../../vmm/run-guests.js';
import { chattyGuest } from './support/tiny-guest.js';

describe('console transcripts are bounded', () => {
  it('appendTranscript keeps the last bytes, never more than twice the bound', () => {
    let t = '';
    let max = 0;
    const n = 5 * TRANSCRIPT_KEEP_BYTES + 123;
    for (let i = 0; i < n; i++) {
      t = appendTranscript(t, String.fromCharCode(i & 0xff));
      max = Math.max(max, t.length);
    }
    expect(max).toBeLessThanOrEqual(2 * TRANSCRIPT_KEEP_BYTES);
    expect(t.length).toBeGreaterThanOrEqual(TRANSCRIPT_KEEP_BYTES);
    // The newest bytes are the ones kept, in order.
    expect(t.charCodeAt(t.length - 1)).toBe((n - 1) & 0xff);
    expect(t.charCodeAt(t.length - 2)).toBe((n - 2) & 0xff);
  });

  it('a guest writing more than twice the bound to COM1 keeps a bounded transcript; every byte is still streamed', async () => {
    const count = 2 * TRANSCRIPT_KEEP_BYTES + 100_000;
    const file = path.join(mkdtempSync(path.join(tmpdir(), 'fm-chatty-')), 'chatty.elf');
    writeFileSync(file, chattyGuest(count, 0x42, 1));
    const { machine, hypervisor, vms } = createGuestMachine([{ path: file, memBytes: 16 * 1024 * 1024, vcpus: 1 }], { pcpus: 1, pace: 'virtual' });
    let streamed = 0;
    let longest = 0;
    vms[0]!.onSerial = (t) => {
      streamed += t.length;
      if ((streamed & 0xffff) === 0) longest = Math.max(longest, vms[0]!.serial.length);
    };
    try {
      const exit = await machine.run({ timeoutMs: 600_000 });
      expect(exit).toMatchObject({ reason: 'debug-exit', code: 3 });
      expect(streamed).toBe(count);
      expect(Math.max(longest, vms[0]!.serial.length)).toBeLessThanOrEqual(2 * TRANSCRIPT_KEEP_BYTES);
      expect(vms[0]!.serial.endsWith('BBBB')).toBe(true);
    } finally {
      hypervisor.close();
      machine.close();
    }
  });
});
