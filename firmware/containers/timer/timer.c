/*
 * timer: the OS's IRQ0 time base must advance (SYS_TICKS, 1 ms per PIT
 * interrupt) and PIT channel 0 must count. The counter is read through the
 * read-only use of the granted port 0x40 (the OS programmed channel 0 in
 * lobyte/hibyte mode 2 with divisor 1193, so successive reads return the
 * low and high byte of the live count). Rates are not checked: emulators
 * may run the PIT on a virtual clock or merge interrupts under load.
 */
#include "fm.h"

#define PIT_RELOAD 1193
#define TICKS_WANTED 20
#define CODE_NO_TICKS   0x0201
#define CODE_PIT_STUCK  0x0202
#define CODE_PIT_RANGE  0x0203

/* Without a latch (port 0x43 is never granted) the two bytes are read at
 * slightly different times: across a reload the low byte of an old count can
 * pair with the high byte of the new one. No read can exceed this, though. */
#define PIT_MAX_READ (((PIT_RELOAD >> 8) << 8) | 0xff)

static u32 pit_count(void)
{
	u32 lo = fm_inb(0x40);
	u32 hi = fm_inb(0x40);
	return hi << 8 | lo;
}

int main(void)
{
	/* 1. ticks advance */
	u64 t0 = fm_ticks(), t = t0;
	u32 changes = 0, bad = 0, badval = 0;
	u32 prev = pit_count();
	for (u64 i = 0; i < 50000000ull && t < t0 + TICKS_WANTED; i++) {
		u32 v = pit_count();
		if (v > PIT_MAX_READ) {
			bad++;
			badval = v;
		}
		if (v != prev)
			changes++;
		prev = v;
		t = fm_ticks();
	}
	if (t < t0 + TICKS_WANTED) {
		u64 d[4] = { t - t0, TICKS_WANTED, 0, 0 };
		fm_finding(FM_SEV_ERROR, CODE_NO_TICKS, d, "timer ticks did not advance: %lu of %u ticks", t - t0,
			   TICKS_WANTED);
		return FM_EXIT_FAIL;
	}
	if (changes == 0) {
		u64 d[4] = { prev, 0, 0, 0 };
		fm_finding(FM_SEV_ERROR, CODE_PIT_STUCK, d, "PIT channel 0 count stuck at %u", prev);
		return FM_EXIT_FAIL;
	}
	if (bad) {
		u64 d[4] = { badval, PIT_RELOAD, bad, 0 };
		fm_finding(FM_SEV_ERROR, CODE_PIT_RANGE, d, "PIT channel 0 count %u impossible with reload value %u",
			   badval, PIT_RELOAD);
		return FM_EXIT_FAIL;
	}
	/* No rate check: on emulators the PIT counts host time while IRQ0s can be
	 * merged under load (QEMU TCG), and reads far apart miss reloads, so the
	 * ratio of reloads to ticks says nothing reliable. A PIT that counts and
	 * ticks that advance is what the OS's time limits need. */
	fm_log("IRQ0 ticks advancing (%u observed), PIT channel 0 counting down from %u", TICKS_WANTED, PIT_RELOAD);
	return FM_EXIT_PASS;
}
