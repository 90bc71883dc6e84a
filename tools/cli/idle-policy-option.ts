/** `--idle-policy native|emulated|adaptive` for run and boot. */
import { parseIdlePolicy, type IdlePolicy } from '../../hypervisor/scheduling/idle-controller.js';
import { UsageError } from './args.js';

export function idlePolicyOption(value: string | undefined): IdlePolicy {
  try {
    return parseIdlePolicy(value);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}
