import { beforeAll, describe, expect, it } from 'vitest';
import { createGuestMachine, restoreGuestMachine, type GuestMachine } from '../../vmm/run-guests.js';
import { buildImages } from '../../tools/build-images.mjs';
import { decodeRdtsc, nsAtTsc, tscAt, tscOffsetFor, RDTSC_EXIT_NS, TSC_HZ } from '../../machine/cpu/x86/tsc.js';
import { cpuid } from '../../machine/cpu/x86/cpuid.js';
import { VmTsc } from '../../hypervisor/vm-tsc.js';
import { StateError } from '../../machine/state.js';
import type { VmImage } from '../../hypervisor/hypervisor.js';

/**
 * The TSC of a VM runs on the VM's virtual time at TSC_HZ (machine/cpu/x86/tsc.ts):
 * a guest that calibrates it against the PIT the ways Linux does
 * (guests/tsccal) gets the frequency CPUID states, the same on every run, and a
 * VM saved and restored reads on from the same TSC.
 */
const MiB = 1024 * 1024;
let images: Record<string, string>;
const spec = (cmdline: string, vcpus = 1) => [{ path: images['tsccal']!, memBytes: 16 * MiB, vcpus, cmdline }];
const opts = { pcpus: 1, pace: 'virtual' as const };

async function runToEnd(g: GuestMachine): Promise<{ serial: string; code: number; atNs: number; counters: Record<string, number> }> {
  try {
    const exit = await g.machine.run({ timeoutMs: 300_000 });
    return { serial: g.vms[0]!.serial.replace(/\r\n/g, '\n'), code: exit.code, atNs: g.vms[0]!.exit?.atNs ?? -1, counters: { ...g.vms[0]!.vcpus[0]!.cpu.counters } };
  } finally {
    g.hypervisor.close();
    g.machine.close();
  }
}

const khz = (serial: string, what: string): number => {
  const m = new RegExp(`tsccal: ${what} (\\d+) kHz`).exec(serial);
  if (!m) throw new Error(`no '${what}' line in:\n${serial}`);
  return Number(m[1]);
};

describe('TSC on virtual time', () => {
  beforeAll(async () => {
    images = (await buildImages({ quiet: true })).guests;
  });

  it('a guest calibrating against PIT channel 2 gets the CPUID frequency within 0.1%, identically on every run', async () => {
    const first = await runToEnd(createGuestMachine(spec('ms=2'), opts));
    expect(first.code).toBe(1); // isa-debug-exit 0: every check passed
    expect(first.serial).toContain('tsccal: cpuid 0x15 ratio 80/1 crystal 25000000 Hz\n');
    expect(first.serial).toContain('tsccal: invariant TSC yes\n');
    expect(khz(first.serial, 'cpuid TSC')).toBe(TSC_HZ / 1000);
    for (const method of ['pit_calibrate', 'quick_pit_calibrate']) expect(Math.abs(khz(first.serial, method) / (TSC_HZ / 1000) - 1)).toBeLessThan(0.001);
    expect(first.serial).toContain('tsccal: 1000 reads monotonic\n');
    expect(first.serial).toContain('tsccal: IA32_TSC write moves RDTSC\n');
    expect(first.serial).toContain('tsccal: RDTSCP returns IA32_TSC_AUX\n');
    // TSC-deadline mode: the guest checks it fired at or after the deadline, that the MSR then reads 0,
    // and that leaving the mode disarms it; here: no later than the ISR's own entry cost (< 1 us) plus
    // the virtual cost of the RDTSC that reads the time (RDTSC_EXIT_NS).
    const bound = 2000 + (RDTSC_EXIT_NS * TSC_HZ) / 1e9;
    const late = /tsccal: TSC deadline fired (\d+) ticks after the deadline\n/.exec(first.serial);
    expect(late, first.serial).not.toBeNull();
    expect(Number(late![1])).toBeLessThan(bound);
    const moved = /tsccal: after an IA32_TSC write it fired (\d+) ticks after the deadline\n/.exec(first.serial);
    expect(moved, first.serial).not.toBeNull();
    expect(Number(moved![1])).toBeLessThan(bound);
    // Every RDTSC and RDTSCP exited to us (the engine's own would read the host's TSC).
    expect(first.counters['rdtsc']).toBeGreaterThan(1000);
    expect(first.counters['rdtscp']).toBe(1);
    const second = await runToEnd(createGuestMachine(spec('ms=2'), opts));
    expect(second.serial).toBe(first.serial);
    expect(second.atNs).toBe(first.atNs);
  });

  it('a VM saved after the guest wrote IA32_TSC reads on from the same TSC when restored', async () => {
    // Where the reference run wrote IA32_TSC (machine time of that line) and where it ended.
    const refMachine = createGuestMachine(spec('ms=1'), opts);
    let wroteAt = -1;
    refMachine.vms[0]!.onSerial = () => {
      if (wroteAt < 0 && refMachine.vms[0]!.serial.endsWith('IA32_TSC write moves RDTSC\r\n')) wroteAt = refMachine.machine.now();
    };
    const ref = await runToEnd(refMachine);
    expect(wroteAt).toBeGreaterThan(0);
    const g = createGuestMachine(spec('ms=1'), opts);
    const vm = g.vms[0]!;
    g.machine.timeline.schedule(Math.floor((wroteAt + ref.atNs) / 2), () => g.machine.pause());
    const running = g.machine.run({ timeoutMs: 300_000 });
    while (!g.machine.paused && !g.machine.exit) await new Promise((r) => setTimeout(r, 2));
    expect(g.machine.exit).toBeNull();
    expect(vm.serial).toContain('IA32_TSC write moves RDTSC');
    const image: VmImage = g.hypervisor.snapshotVm(vm);
    const before = vm.tsc.read(0);
    g.machine.stop('snapshot taken');
    await running;
    g.hypervisor.close();
    g.machine.close();

    const offsets = image.state['tscOffsets'] as string[];
    // The guest set the TSC to 2^40: the offset is that minus 2 ticks per ns of the VM clock.
    expect(BigInt(offsets[0]!)).toBe(tscOffsetFor(tscAt(image.state['clockNs'] as number, BigInt(offsets[0]!)), image.state['clockNs'] as number));
    expect(before).toBeGreaterThanOrEqual(1n << 40n);
    for (const portable of [false, true]) {
      const restored = restoreGuestMachine(image, { ...opts, portable });
      expect(restored.vms[0]!.tsc.read(0)).toBe(before);
      const end = await runToEnd(restored);
      expect(end.serial).toBe(ref.serial);
      expect(end.code).toBe(1);
      // A restored VM maps its LAPIC page again on first touch (one more EPT violation, which
      // re-enters a block of a few bytes), so it may end a few virtual ns later; the TSC values
      // the guest printed above are the same.
      expect(end.atNs - ref.atNs).toBeGreaterThanOrEqual(0);
      expect(end.atNs - ref.atNs).toBeLessThan(64);
    }
  });

  it('the vCPUs of a VM read one TSC: no warp between them under a lock (Linux check_tsc_warp)', async () => {
    const r = await runToEnd(createGuestMachine(spec('warp=200', 2), { ...opts, pcpus: 2 }));
    expect(r.serial).toContain('tsccal: 2 CPUs, 400 reads under the lock, 0 warps (worst 0 ticks)\n');
    expect(r.code).toBe(1);
  });

  it('every RDTSC exits exactly once, and a loop of them advances the TSC by the same amount on every run', async () => {
    const runs = [await runToEnd(createGuestMachine(spec('reads=2000'), opts)), await runToEnd(createGuestMachine(spec('reads=2000'), opts))];
    for (const r of runs) {
      expect(r.serial).toMatch(/tsccal: 2000 reads, \d+ ticks\n/);
      expect(r.counters['rdtsc']).toBe(2001);
    }
    expect(runs[1]!.serial).toBe(runs[0]!.serial);
  });
});

describe('TSC arithmetic and decoding', () => {
  it('reads 2 ticks per ns plus the offset, wrapping at 2^64, and finds the deadline time from a TSC value', () => {
    expect(tscAt(1_000, 0n)).toBe(2_000n);
    const off = tscOffsetFor(1n << 40n, 5_000);
    expect(tscAt(5_000, off)).toBe(1n << 40n);
    expect(tscAt(5_001, off)).toBe((1n << 40n) + 2n);
    expect(tscAt(0, tscOffsetFor((1n << 64n) - 1n, 0))).toBe((1n << 64n) - 1n);
    expect(tscAt(1, tscOffsetFor((1n << 64n) - 1n, 0))).toBe(1n);
    // A deadline fires once the TSC has reached it, never before: odd values round up.
    expect(nsAtTsc(2_001n, 0n)).toBe(1_001);
    expect(nsAtTsc(2_000n, 0n)).toBe(1_000);
    expect(nsAtTsc(5n, 100n)).toBe(0);
  });

  it('decodes RDTSC and RDTSCP with prefixes, and nothing else', () => {
    expect(decodeRdtsc(Uint8Array.of(0x0f, 0x31), true)).toEqual({ rdtscp: false, length: 2 });
    expect(decodeRdtsc(Uint8Array.of(0x0f, 0x01, 0xf9), true)).toEqual({ rdtscp: true, length: 3 });
    expect(decodeRdtsc(Uint8Array.of(0x66, 0x48, 0x0f, 0x31), true)).toEqual({ rdtscp: false, length: 4 });
    // REX is an opcode (INC/DEC) outside 64-bit mode.
    expect(decodeRdtsc(Uint8Array.of(0x48, 0x0f, 0x31), false)).toBeNull();
    expect(decodeRdtsc(Uint8Array.of(0x0f, 0x32), true)).toBeNull();
    expect(decodeRdtsc(Uint8Array.of(0x0f), true)).toBeNull();
  });

  it('CPUID states the TSC rate in leaves 0x15 and 0x16 and the invariant TSC bit for VM guests only', () => {
    const bare = { apicId: 0, logicalCpus: 1 };
    // The bare machine's RDTSC is still the engine's (host time): no rate, not invariant.
    expect(cpuid(0, 0, bare).eax).toBe(0xd);
    expect(cpuid(0x15, 0, bare)).toEqual({ eax: 0, ebx: 0, ecx: 0, edx: 0 });
    expect(cpuid(0x80000007, 0, bare).edx).toBe(0);
    const cfg = { apicId: 0, logicalCpus: 1, hypervisor: true };
    expect(cpuid(0, 0, cfg).eax).toBeGreaterThanOrEqual(0x16);
    const l15 = cpuid(0x15, 0, cfg);
    expect((l15.ecx * l15.ebx) / l15.eax).toBe(TSC_HZ);
    expect(cpuid(0x16, 0, cfg).eax).toBe(TSC_HZ / 1e6);
    expect(cpuid(0x80000007, 0, cfg).edx & (1 << 8)).not.toBe(0);
  });

  it('VmTsc state: offsets round-trip, older records start at 0, bad ones are refused with the field named', () => {
    let now = 1_000;
    const t = new VmTsc(2, () => now);
    t.write(1, 12_345n);
    now = 2_000;
    const saved = t.saveState();
    const u = new VmTsc(2, () => now);
    u.restoreState(saved, 'vm x');
    expect(u.read(1)).toBe(12_345n + 2_000n);
    expect(u.read(0)).toBe(4_000n);
    u.restoreState(undefined, 'vm x');
    expect(u.read(1)).toBe(4_000n);
    expect(() => u.restoreState(['1'], 'vm x')).toThrow(StateError);
    expect(() => u.restoreState(['1', 'x'], 'vm x')).toThrow(/tscOffsets\[1\]/);
    expect(() => u.restoreState(['1', (1n << 63n).toString()], 'vm x')).toThrow(/signed 64-bit/);
  });
});
