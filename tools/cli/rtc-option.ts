/** `--rtc base=utc|DATE` for run and boot: the host's time unless a date is given (QEMU's -rtc). */
import { parseRtcBase, RtcOptionError } from '../../machine/devices/rtc-base.js';
import { UsageError } from './args.js';

export const RTC_HELP_LINE = '  --rtc base=utc|DATE RTC start: the host time (default, utc) or a fixed UTC date YYYY-MM-DD[THH:MM:SS]';

export function rtcOption(spec: string | undefined): number {
  try {
    return parseRtcBase(spec);
  } catch (e) {
    if (e instanceof RtcOptionError) throw new UsageError(e.message);
    throw e;
  }
}
