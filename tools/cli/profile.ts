/**
 * `firmament profile`: behaviour profiles (docs/security.md). Learn one from
 * a running VM through its monitor, push one, show the one in force, or
 * check a hand-written file.
 */
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { UsageError, toJson } from './args.js';
import { connectMonitor, parseDurationMs } from './monitor-connect.js';
import { loadProfileFile, profileDocument } from '../../hypervisor/security/profile.js';

export const PROFILE_HELP = `firmament profile <learn|set|get|check> ... (behaviour profiles, docs/security.md)

  learn --monitor SOCK [--vm NAME] --for 10s [--out FILE] [--apply]
                     learn a profile from a running VM over that much of its guest time;
                     prints it (or writes FILE); --apply holds the VM to it at once
  set FILE --monitor SOCK [--vm NAME]
                     hold a running VM to the profile in FILE (checked first)
  get --monitor SOCK [--vm NAME]
                     print the profile a VM is held to
  check FILE...      check profile files; errors name the file and the field

The VM defaults to the first one. See also: firmament anomalies, firmament run --profile FILE.`;

export async function profileCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { monitor: { type: 'string' }, vm: { type: 'string' }, for: { type: 'string' }, out: { type: 'string' }, apply: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
  });
  const [sub, ...args] = positionals;
  if (values.help || sub === undefined) {
    console.log(PROFILE_HELP);
    return values.help ? 0 : 2;
  }
  const vm = values.vm !== undefined ? { vm: values.vm } : {};
  switch (sub) {
    case 'check': {
      if (args.length === 0) throw new UsageError('profile check: expected one or more profile files');
      for (const f of args) {
        const p = loadProfileFile(f);
        console.log(`${f}: ok (${Object.keys(p.thresholds).length} rate thresholds, sets: ${Object.keys(p.sets).join(', ') || 'none'})`);
      }
      return 0;
    }
    case 'learn': {
      if (args.length !== 0) throw new UsageError('profile learn: takes no positional arguments (--vm NAME --for 10s)');
      if (values.for === undefined) throw new UsageError('profile learn: needs --for DURATION (guest time, e.g. 10s)');
      const forMs = parseDurationMs(values.for, '--for');
      const client = await connectMonitor('profile learn', values.monitor);
      try {
        const r = await client.request('profile-learn', { ...vm, forMs, ...(values.apply ? { apply: true } : {}) });
        const text = toJson(r.profile) + '\n';
        if (values.out !== undefined) {
          writeFileSync(values.out, text);
          console.error(`firmament: profile of ${r.vm} written to ${values.out}${values.apply ? ' (and in force)' : ''}`);
        } else process.stdout.write(text);
      } finally {
        client.close();
      }
      return 0;
    }
    case 'set': {
      if (args.length !== 1) throw new UsageError('profile set: expected one profile FILE');
      const file = args[0]!;
      // Checked here first, so the error names the file rather than the monitor's argument.
      const parsed = loadProfileFile(file);
      const client = await connectMonitor('profile set', values.monitor);
      try {
        const r = await client.request('profile-set', { ...vm, profile: profileDocument(parsed) });
        console.log(`${r.vm}: held to ${file} (${r.rates.length} rate thresholds; sets: ${r.sets.join(', ') || 'none'})`);
      } finally {
        client.close();
      }
      return 0;
    }
    case 'get': {
      const client = await connectMonitor('profile get', values.monitor);
      try {
        const r = await client.request('profile-get', vm);
        console.log(toJson(r));
      } finally {
        client.close();
      }
      return 0;
    }
    default:
      throw new UsageError(`profile: unknown subcommand '${sub}' (learn, set, get, check)`);
  }
}
