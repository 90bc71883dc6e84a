#!/usr/bin/env node
// A stand-in for qemu-system-x86_64 that kvm-unit-tests' runner can call ($QEMU): it maps the
// suite's QEMU command line onto `firmament run` and runs it in this process, so the exit status
// is firmament's, which already follows isa-debug-exit ((value << 1) | 1). The probes the runner
// makes (-help, -device ?) get answers in QEMU's format. docs/kvm-unit-tests.md.
import { existsSync, realpathSync, statSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';

/** The version we answer -help with: the QEMU whose TCG results we compare against (docs/conformance.md). */
export const QEMU_VERSION = '7.2.0';
/** firmament run's --vcpus limit (tools/cli/args.ts parseCount). */
export const MAX_VCPUS = 64;
/** QEMU's default -m (MiB). */
const DEFAULT_MEM_MIB = 128;
/** firmament run's --mem limit (tools/cli/args.ts MAX_GUEST_RAM). */
const MAX_MEM_MIB = 2048;

/** What `-device ?` lists: only devices a firmament VM really has, plus pc-testdev (accepted with a warning). */
const DEVICES = [
  { name: 'isa-debug-exit', bus: 'ISA-bus', desc: 'exit status (value << 1) | 1; firmament: iobase=0xf4, iosize=0x4 only' },
  { name: 'pc-testdev', bus: 'ISA-bus', desc: 'firmament: accepted, not emulated (the runner requires it)' },
];

/** A command line we cannot honour: printed as QEMU prints its errors, exit status 1. */
export class ShimError extends Error {
  constructor(message) {
    super(message);
    this.name = 'ShimError';
  }
}

const PROG = 'qemu-system-x86_64';

/**
 * QEMU's -m: a number of MiB, or with a suffix K/M/G/T (also `size=N`); the result in MiB.
 * @param {string} text
 */
export function parseQemuMem(text) {
  const m = /^(?:size=)?(\d+(?:\.\d+)?)([kKmMgGtT]?)[bB]?(?:,.*)?$/.exec(text.trim());
  if (!m) throw new ShimError(`-m ${text}: expected a size such as 128, 512M or 2G`);
  const unit = (m[2] || 'M').toUpperCase();
  const mib = Number(m[1]) * { K: 1 / 1024, M: 1, G: 1024, T: 1024 * 1024 }[unit];
  if (!Number.isInteger(mib) || mib < 2) throw new ShimError(`-m ${text}: firmament needs a whole number of MiB, at least 2`);
  if (mib > MAX_MEM_MIB) throw new ShimError(`-m ${text}: firmament run gives a VM at most ${MAX_MEM_MIB} MiB`);
  return mib;
}

/**
 * QEMU's -smp: `N`, `N,key=value...` or `cpus=N,...`; the result is the number of vCPUs.
 * @param {string} text
 */
export function parseQemuSmp(text) {
  let cpus;
  for (const [i, part] of text.split(',').entries()) {
    const kv = /^(\w+)=(\d+)$/.exec(part);
    if (i === 0 && /^\d+$/.test(part)) cpus = Number(part);
    else if (kv && kv[1] === 'cpus') cpus = Number(kv[2]);
    else if (kv && kv[1] === 'maxcpus') {
      // firmament has no CPU hotplug: maxcpus only bounds cpus.
    } else if (kv && ['sockets', 'cores', 'threads', 'dies'].includes(kv[1]) && kv[2] === '1') {
      // a topology of 1 says nothing
    } else throw new ShimError(`-smp ${text}: firmament takes -smp N (no topology)`);
  }
  if (cpus === undefined || cpus < 1) throw new ShimError(`-smp ${text}: expected a number of CPUs`);
  // The runner's MAX_SMP probe looks for this sentence (scripts/vmm.bash qemu_probe_maxsmp).
  if (cpus > MAX_VCPUS) throw new ShimError(`Invalid SMP CPUs ${cpus}. The max CPUs supported by machine 'firmament' is ${MAX_VCPUS}`);
  return cpus;
}

/**
 * QEMU's -initrd for a Multiboot kernel: modules separated by ',' (',,' is a literal comma), each
 * `path [args]`; QEMU gives each module that whole text as its command line.
 * @param {string} text
 * @returns {{ path: string, cmdline: string }[]}
 */
export function parseQemuInitrd(text) {
  const mods = [];
  let cur = '';
  for (let i = 0; i < text.length; i++) {
    if (text[i] === ',' && text[i + 1] === ',') {
      cur += ',';
      i++;
    } else if (text[i] === ',') {
      mods.push(cur);
      cur = '';
    } else cur += text[i];
  }
  mods.push(cur);
  return mods.map((m) => {
    const cmdline = m.trim();
    if (cmdline === '') throw new ShimError(`-initrd ${text}: empty module name`);
    return { path: cmdline.split(/\s+/, 1)[0], cmdline };
  });
}

/**
 * -device NAME[,props]: only what a firmament VM has.
 * @param {string} text
 * @param {string[]} warnings
 */
function checkDevice(text, warnings) {
  const [name, ...props] = text.split(',');
  if (name === 'isa-debug-exit') {
    const p = Object.fromEntries(props.map((kv) => kv.split('=')));
    const iobase = p.iobase === undefined ? 0x501 : Number(p.iobase);
    const iosize = p.iosize === undefined ? 1 : Number(p.iosize);
    if (iobase !== 0xf4 || (iosize !== 4 && iosize !== 1 && iosize !== 2)) throw new ShimError(`-device ${text}: a firmament VM has isa-debug-exit at iobase=0xf4 only`);
    return;
  }
  if (name === 'pc-testdev') {
    warnings.push('-device pc-testdev is not emulated by firmament: its ports (0xe0-0xe7) and MMIO (0xff000000) are open bus');
    return;
  }
  throw new ShimError(`-device ${name}: firmament has no such device (it has: ${DEVICES.map((d) => d.name).join(', ')})`);
}

/**
 * -machine [type=]NAME,key=value...: firmament is one machine with one engine.
 * @param {string} text
 * @param {string[]} warnings
 */
function checkMachine(text, warnings) {
  for (const [i, part] of text.split(',').entries()) {
    const [key, value] = part.includes('=') ? part.split('=', 2) : i === 0 ? ['type', part] : [part, 'on'];
    if (key === 'accel') {
      // Any accelerator name: firmament is the accelerator.
    } else if (key === 'type') {
      if (!['pc', 'microvm'].includes(value) && !/^pc-i440fx/.test(value)) throw new ShimError(`-machine ${value}: firmament's VM is a pc-like machine, not ${value}`);
    } else warnings.push(`-machine ${key}=${value} ignored (firmament has no such switch)`);
  }
}

/**
 * -cpu MODEL[,features]: firmament's vCPU model is fixed (docs/conformance.md).
 * @param {string} text
 * @param {string[]} warnings
 */
function checkCpu(text, warnings) {
  const [model, ...features] = text.split(',');
  if (model === 'host') throw new ShimError(`CPU model 'host' requires KVM or HVF`);
  if (model === 'qemu64' && features.length === 0) return;
  warnings.push(`-cpu ${text} ignored: a firmament vCPU is always the same model (CPUID: docs/conformance.md)`);
}

/**
 * Maps a QEMU command line (as kvm-unit-tests' x86/run builds it) onto `firmament run` arguments.
 * Throws ShimError for options firmament cannot honour; `warnings` are what it accepts but ignores.
 * @param {readonly string[]} argv
 * @param {{ extraRunArgs?: readonly string[] }} [opts]
 * @returns {{ kind: 'run', kernel: string, runArgs: string[], warnings: string[] } | { kind: 'help' | 'version' | 'device-help' | 'machine-help' | 'cpu-help' }}
 */
export function mapQemuArgs(argv, opts = {}) {
  const warnings = [];
  let kernel;
  let mem = DEFAULT_MEM_MIB;
  let vcpus = 1;
  let append;
  let initrd = [];
  let gdb;
  let paused = false;
  const needValue = (i, opt) => {
    if (i + 1 >= argv.length) throw new ShimError(`${opt}: requires an argument`);
    return argv[i + 1];
  };
  for (let i = 0; i < argv.length; i++) {
    const raw = argv[i];
    // QEMU takes every option with one dash or two.
    const opt = raw.startsWith('--') ? raw.slice(1) : raw;
    switch (opt) {
      case '-h':
      case '-help':
        return { kind: 'help' };
      case '-version':
        return { kind: 'version' };
      case '-no-reboot':
      case '-nodefaults':
      case '-nographic':
      case '-enable-kvm':
        break;
      case '-S':
        paused = true;
        break;
      case '-s':
        gdb = 'tcp::1234';
        break;
      case '-gdb':
        gdb = needValue(i, opt);
        i++;
        break;
      case '-display':
      case '-vga':
        if (!['none'].includes(needValue(i, opt))) throw new ShimError(`${opt} ${argv[i + 1]}: firmament has no display (use none)`);
        i++;
        break;
      case '-serial':
        if (needValue(i, opt) !== 'stdio') throw new ShimError(`-serial ${argv[i + 1]}: firmament run sends COM1 to stdout (-serial stdio) only`);
        i++;
        break;
      case '-global': {
        const g = needValue(i, opt);
        // KVM's in-kernel PIT has no meaning here; anything else is reported.
        if (!g.startsWith('kvm-pit.')) warnings.push(`-global ${g} ignored`);
        i++;
        break;
      }
      case '-accel':
        i++;
        break;
      case '-machine':
      case '-M': {
        const v = needValue(i, opt);
        if (v === 'help' || v === '?') return { kind: 'machine-help' };
        checkMachine(v, warnings);
        i++;
        break;
      }
      case '-cpu': {
        const v = needValue(i, opt);
        if (v === 'help' || v === '?') return { kind: 'cpu-help' };
        checkCpu(v, warnings);
        i++;
        break;
      }
      case '-device': {
        const v = needValue(i, opt);
        if (v === 'help' || v === '?') return { kind: 'device-help' };
        checkDevice(v, warnings);
        i++;
        break;
      }
      case '-m':
        mem = parseQemuMem(needValue(i, opt));
        i++;
        break;
      case '-smp':
        vcpus = parseQemuSmp(needValue(i, opt));
        i++;
        break;
      case '-kernel':
        kernel = needValue(i, opt);
        i++;
        break;
      case '-append':
        append = needValue(i, opt);
        i++;
        break;
      case '-initrd':
        initrd = parseQemuInitrd(needValue(i, opt));
        i++;
        break;
      default:
        throw new ShimError(`${raw}: ${raw.startsWith('-') ? 'option not supported by the firmament shim' : 'unexpected argument (the kernel goes after -kernel)'}`);
    }
  }
  if (kernel === undefined) throw new ShimError('no -kernel given: firmament runs a Multiboot or Linux kernel, as -kernel does');
  const runArgs = [kernel, '--mem', `${mem}M`, '--vcpus', String(vcpus)];
  if (append !== undefined) runArgs.push('--cmdline', append);
  for (const m of initrd) runArgs.push('--module', `${m.path},${m.cmdline}`);
  if (gdb !== undefined) runArgs.push('--gdb', gdb);
  if (paused) runArgs.push('--paused');
  runArgs.push(...(opts.extraRunArgs ?? []));
  return { kind: 'run', kernel, runArgs, warnings };
}

/** FIRMAMENT_RUN_ARGS: more `firmament run` options, split on spaces (e.g. "--cpus 2 --clock virtual"). */
export function extraRunArgs(env) {
  const text = env.FIRMAMENT_RUN_ARGS?.trim();
  return text ? text.split(/\s+/) : [];
}

/** What -help prints: the first line is what the runner parses (QEMU_VERSION_STRING). */
export function helpText() {
  return [
    `QEMU emulator version ${QEMU_VERSION} (firmament qemu-shim: this command line runs under firmament run)`,
    `usage: qemu-shim [options]`,
    `  -kernel FILE  -initrd 'FILE [args][,FILE...]'  -append CMDLINE  -smp N  -m SIZE`,
    `  -device isa-debug-exit,iobase=0xf4,iosize=0x4  -device pc-testdev (not emulated)`,
    `  -machine accel=...  -cpu MODEL (ignored)  -serial stdio  -display none  -nodefaults  -no-reboot`,
    `  -gdb tcp::PORT  -s  -S`,
    `  FIRMAMENT_RUN_ARGS="..." adds firmament run options; docs/kvm-unit-tests.md`,
    '',
  ].join('\n');
}

/** `-device ?` in QEMU's format (the runner greps for "pc-testdev" with the quotes). */
export function deviceHelpText() {
  return ['Misc devices:', ...DEVICES.map((d) => `name "${d.name}", bus ${d.bus}, desc "${d.desc}"`), ''].join('\n');
}

/**
 * Runs the shim: probes answered here, runs handed to firmament's CLI in this process.
 * @param {string[]} argv
 * @returns {Promise<number>} the exit status
 */
export async function shimMain(argv) {
  let mapped;
  try {
    mapped = mapQemuArgs(argv, { extraRunArgs: extraRunArgs(process.env) });
    if (mapped.kind === 'run') {
      // As QEMU: the kernel is checked after the options (the runner's premature-failure probe relies on that).
      if (!existsSync(mapped.kernel) || !statSync(mapped.kernel).isFile()) throw new ShimError(`could not load kernel '${mapped.kernel}': No such file or directory`);
    }
  } catch (e) {
    if (!(e instanceof ShimError)) throw e;
    process.stderr.write(`${PROG}: ${e.message}\n`);
    return 1;
  }
  switch (mapped.kind) {
    case 'help':
    case 'version':
      process.stdout.write(helpText());
      return 0;
    case 'device-help':
      process.stdout.write(deviceHelpText());
      return 0;
    case 'machine-help':
      process.stdout.write('Supported machines are:\npc                   firmament run VM (PC-like, no PCI)\n');
      return 0;
    case 'cpu-help':
      process.stdout.write('Available CPUs:\nx86 qemu64 (firmament: one fixed model, any -cpu is accepted and ignored)\n');
      return 0;
  }
  for (const w of mapped.warnings) process.stderr.write(`${PROG}: warning: ${w}\n`);
  if (process.env.QEMU_SHIM_VERBOSE === '1') process.stderr.write(`${PROG}: warning: firmament run ${mapped.runArgs.join(' ')}\n`);
  // firmament.mjs reads process.argv and sets the exit code; it is imported once, here.
  process.argv = [process.argv[0], fileURLToPath(new URL('../firmament.mjs', import.meta.url)), 'run', ...mapped.runArgs];
  await import('../firmament.mjs');
  return typeof process.exitCode === 'number' ? process.exitCode : 0;
}

const invokedDirectly = process.argv[1] !== undefined && import.meta.url === pathToFileURL(realpathSync(process.argv[1])).href;
if (invokedDirectly) process.exitCode = await shimMain(process.argv.slice(2));
