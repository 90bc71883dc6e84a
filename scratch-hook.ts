import { createGuestMachine } from './hypervisor/run-guests.js';
const mode = process.env.MODE ?? 'none';
const { machine, vms } = createGuestMachine([{ path: 'images/build/guests/compute.elf', memBytes: 16 << 20, vcpus: 1, cmdline: 'rounds=16' }], { pcpus: 1, pace: 'virtual' });
const cpu = vms[0]!.vcpus[0]!.cpu;
const cb = (cpu.engine as any).register((_uc: unknown, _a: unknown) => {}, (cpu.engine as any).lib.proto.code);
let slices = 0;
const rs = cpu.runSlice.bind(cpu);
(cpu as any).runSlice = (b: bigint, c?: number) => {
  if (slices++ === 3) {
    const out = [0n];
    if (mode === 'dead') (cpu.engine as any).lib.fn.hookAdd((cpu.engine as any).uc, out, 1 << 2, cb, null, 1n, 1n);
    if (mode === 'unmapped') (cpu.engine as any).lib.fn.hookAdd((cpu.engine as any).uc, out, 1 << 2, cb, null, 0x7fff00000000n, 0x7fff00000000n);
    if (mode === 'rip') { const rip = cpu.readRip(); (cpu.engine as any).lib.fn.hookAdd((cpu.engine as any).uc, out, 1 << 2, cb, null, rip, rip); }
    console.log('hook added', mode, cpu.readRip().toString(16));
  }
  return rs(b, c);
};
const exit = await machine.run({ timeoutMs: 5000 });
console.log(mode, exit.reason, vms[0]!.serial.split('\n').filter(Boolean).slice(-1)[0], JSON.stringify(vms[0]!.exitCounts()['ept-violation']));
