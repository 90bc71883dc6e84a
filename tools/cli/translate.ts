/** `firmament translate <guest.elf> <gva>`: run a guest, then show its GVA -> GPA -> HPA walk. */
import { parseArgs } from 'node:util';
import { createGuestMachine } from '../../vmm/run-guests.js';
import { translateForVcpu, formatTranslation } from '../../hypervisor/translate.js';
import { MAX_GUEST_RAM, parseCount, parseMemSize, toJson, UsageError } from './args.js';

export const TRANSLATE_HELP = `firmament translate <guest.elf> <gva> [options]
  Runs the guest under the hypervisor until it exits (or --after-serial TEXT appears),
  then walks <gva> with the vCPU's control registers: every guest level (entry GPA,
  its HPA, raw entry, flags), the GPA, every EPT level, and the HPA.

  --vcpu N            which vCPU's CR3/CR0/CR4/EFER to use (default 0)
  --access KIND       read (default), write or fetch
  --user              a CPL-3 access
  --after-serial TEXT stop the guest when its COM1 output contains TEXT
  --mem SIZE, --vcpus N, --cmdline S    as for run
  --json              the full walk as JSON`;

export async function translateCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { vcpu: { type: 'string' }, access: { type: 'string' }, user: { type: 'boolean' }, 'after-serial': { type: 'string' }, mem: { type: 'string' }, vcpus: { type: 'string' }, cmdline: { type: 'string' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
  });
  if (values.help) {
    console.log(TRANSLATE_HELP);
    return 0;
  }
  if (positionals.length !== 2) throw new UsageError('translate: expected <guest.elf> <gva>');
  let gva: bigint;
  try {
    gva = BigInt(positionals[1]!);
  } catch {
    throw new UsageError(`translate: '${positionals[1]}' is not an address (use 0x... or decimal)`);
  }
  const access = values.access ?? 'read';
  if (access !== 'read' && access !== 'write' && access !== 'fetch') throw new UsageError(`--access ${access}: expected read, write or fetch`);
  const { machine, hypervisor, vms } = createGuestMachine([{ path: positionals[0]!, memBytes: parseMemSize(values.mem ?? '64M', '--mem', MAX_GUEST_RAM), vcpus: parseCount(values.vcpus, '--vcpus', 1), ...(values.cmdline !== undefined ? { cmdline: values.cmdline } : {}) }], { pcpus: 1, pace: 'virtual' });
  const vm = vms[0]!;
  const stopAt = values['after-serial'];
  if (stopAt !== undefined) vm.onSerial = () => vm.serial.endsWith(stopAt) && machine.stop(`serial contains ${JSON.stringify(stopAt)}`);
  try {
    await machine.run({ timeoutMs: 120_000 });
    const vcpu = vm.vcpus[Number(values.vcpu ?? '0')];
    if (!vcpu) throw new UsageError(`--vcpu ${values.vcpu}: the guest has ${vm.vcpus.length} vCPUs`);
    const t = translateForVcpu(vcpu, gva, access, values.user === true);
    process.stdout.write((values.json ? toJson(t) : formatTranslation(t)) + '\n');
    return t.ok ? 0 : 1;
  } finally {
    hypervisor.close();
    machine.close();
  }
}
