/**
 * `--rtc base=utc|DATE` (QEMU's spelling): host time by default, a fixed date
 * for determinism, clear errors otherwise; and a VM's CMOS clock reads the
 * chosen time through its own ports 0x70/0x71.
 */
import { describe, expect, it } from 'vitest';
import { parseRtcBase, RtcOptionError } from '../../machine/devices/rtc-base.js';
import { rtcOption } from '../../tools/cli/rtc-option.js';
import { UsageError } from '../../tools/cli/args.js';
import { createGuestMachine } from '../../vmm/run-guests.js';
import { buildImages } from '../../tools/build-images.mjs';
import type { Vm } from '../../hypervisor/vm.js';

const HOST_MS = Date.UTC(2031, 4, 6, 7, 8, 9, 500);
const host = (): number => HOST_MS;

describe('--rtc', () => {
  it('defaults to the host time and takes base=utc the same way', () => {
    expect(parseRtcBase(undefined, host)).toBe(Math.floor(HOST_MS / 1000));
    expect(parseRtcBase('base=utc', host)).toBe(Math.floor(HOST_MS / 1000));
    // The CLI's default really is the host clock now.
    const before = Math.floor(Date.now() / 1000);
    const got = rtcOption(undefined);
    expect(got).toBeGreaterThanOrEqual(before);
    expect(got).toBeLessThanOrEqual(Math.floor(Date.now() / 1000));
  });

  it('takes a fixed UTC date, with or without a time', () => {
    expect(parseRtcBase('base=2006-06-17T16:01:21', host)).toBe(Date.UTC(2006, 5, 17, 16, 1, 21) / 1000);
    expect(parseRtcBase('base=2026-01-01', host)).toBe(Date.UTC(2026, 0, 1) / 1000);
  });

  it('refuses what it cannot honour, naming the option', () => {
    const bad = (spec: string, msg: RegExp): void => {
      expect(() => parseRtcBase(spec, host)).toThrow(RtcOptionError);
      expect(() => parseRtcBase(spec, host)).toThrow(msg);
    };
    bad('base=2026-02-30', /--rtc base=2026-02-30: '2026-02-30' is not a valid date and time/);
    bad('base=2026-01-01T24:00:00', /not a valid date and time/);
    bad('base=yesterday', /'yesterday' is not utc or a date YYYY-MM-DD\[THH:MM:SS\]/);
    bad('base=localtime', /base=localtime is not supported/);
    bad('clock=vm', /unsupported 'clock=vm'/);
    bad('base=', /expected base=utc or base=YYYY-MM-DD/);
    bad('base=2150-01-01', /year 2150 is outside what the CMOS RTC holds/);
    expect(() => rtcOption('base=nope')).toThrow(UsageError);
  });
});

describe('a VM RTC', () => {
  it('reads the --rtc date through the VM ports (BCD, as the CMOS defaults)', async () => {
    const images = (await buildImages({ quiet: true })).guests;
    const { machine, hypervisor, vms } = createGuestMachine([{ path: images['scan']!, memBytes: 16 * 1024 * 1024, vcpus: 1 }], { pcpus: 1, pace: 'virtual', rtcEpochSeconds: parseRtcBase('base=2006-06-17T16:01:21') });
    try {
      const vm = vms[0] as Vm;
      const cpu = vm.vcpus[0]!.cpu;
      const reg = (r: number): number => {
        vm.ioWrite(cpu, 0x70, 1, r);
        return vm.ioRead(cpu, 0x71, 1);
      };
      // seconds, minutes, hours, day of month, month, year, century
      expect([0x00, 0x02, 0x04, 0x07, 0x08, 0x09, 0x32].map(reg)).toEqual([0x21, 0x01, 0x16, 0x17, 0x06, 0x06, 0x20]);
    } finally {
      hypervisor.close();
      machine.close();
    }
  });
});
