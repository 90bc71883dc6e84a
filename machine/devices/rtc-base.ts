/**
 * `--rtc base=utc|DATE`, QEMU's spelling: where the CMOS RTC starts. `utc`
 * (and no option at all, from the CLI) is the host's time now, as QEMU does;
 * a DATE (`2006-06-17T16:01:21` or `2006-06-17`, UTC) fixes it, so runs that
 * compare output with a golden file stay deterministic.
 */
export class RtcOptionError extends Error {}

const DATE_RE = /^(\d{4})-(\d{2})-(\d{2})(?:T(\d{2}):(\d{2}):(\d{2}))?$/;

/** Unix seconds (UTC) for the RTC at virtual time 0. `nowMs` is the host clock (injected for tests). */
export function parseRtcBase(spec: string | undefined, nowMs: () => number = Date.now): number {
  if (spec === undefined) return Math.floor(nowMs() / 1000);
  let base: string | undefined;
  for (const part of spec.split(',')) {
    const eq = part.indexOf('=');
    const key = eq < 0 ? part : part.slice(0, eq);
    const value = eq < 0 ? '' : part.slice(eq + 1);
    if (key !== 'base') throw new RtcOptionError(`--rtc ${spec}: unsupported '${part}' (supported: base=utc or base=YYYY-MM-DD[THH:MM:SS])`);
    base = value;
  }
  if (base === undefined || base === '') throw new RtcOptionError(`--rtc ${spec}: expected base=utc or base=YYYY-MM-DD[THH:MM:SS]`);
  if (base === 'utc') return Math.floor(nowMs() / 1000);
  if (base === 'localtime') throw new RtcOptionError(`--rtc ${spec}: base=localtime is not supported (the RTC runs in UTC); use base=utc or a date`);
  const m = DATE_RE.exec(base);
  if (!m) throw new RtcOptionError(`--rtc ${spec}: '${base}' is not utc or a date YYYY-MM-DD[THH:MM:SS]`);
  const [y, mo, d, h, mi, s] = m.slice(1).map((x) => (x === undefined ? 0 : Number(x))) as [number, number, number, number, number, number];
  const ms = Date.UTC(y, mo - 1, d, h, mi, s);
  const back = new Date(ms);
  // Date.UTC rolls 2026-02-30 over into March: refuse instead of starting at a date nobody asked for.
  if (back.getUTCFullYear() !== y || back.getUTCMonth() !== mo - 1 || back.getUTCDate() !== d || h > 23 || mi > 59 || s > 59) {
    throw new RtcOptionError(`--rtc ${spec}: '${base}' is not a valid date and time`);
  }
  // The CMOS century register holds 19/20 in BCD: keep to years the RTC can show.
  if (y < 1900 || y > 2099) throw new RtcOptionError(`--rtc ${spec}: year ${y} is outside what the CMOS RTC holds (1900-2099)`);
  return ms / 1000;
}
