/*
 * cmos: the standard AT checksum, the 16-bit sum of CMOS bytes 0x10-0x2D,
 * stored big-endian at 0x2E/0x2F. On a mismatch: report it, ask the OS for
 * FIX_CMOS_CHECKSUM (the OS recomputes and writes the checksum itself),
 * then re-check. Exit FIXED when the re-check passes.
 */
#include "fm.h"

#define CODE_CHECKSUM_BAD   0x0301
#define CODE_FIX_FAILED     0x0302

static u8 cmos(u8 reg)
{
	fm_outb(0x70, 0x80 | reg);   /* bit 7: NMI stays disabled */
	return fm_inb(0x71);
}

static bool check(u16 *stored, u16 *computed)
{
	u16 sum = 0;
	for (u8 r = 0x10; r <= 0x2d; r++)
		sum = (u16)(sum + cmos(r));
	*computed = sum;
	*stored = (u16)(cmos(0x2e) << 8 | cmos(0x2f));
	return *stored == sum;
}

int main(void)
{
	u16 stored, computed;
	if (check(&stored, &computed)) {
		fm_log("CMOS checksum ok: 0x%04x over 0x10-0x2D", computed);
		return FM_EXIT_PASS;
	}
	u64 d[4] = { stored, computed, 0, 0 };
	fm_finding(FM_SEV_ERROR, CODE_CHECKSUM_BAD, d, "CMOS checksum bad: stored 0x%04x, computed 0x%04x", stored,
		   computed);
	fm_log("requesting checksum repair");
	long r = fm_fix(FIX_CMOS_CHECKSUM, NULL, 0);
	if (r < 0) {
		u64 e[4] = { (u64)-r, 0, 0, 0 };
		fm_finding(FM_SEV_ERROR, CODE_FIX_FAILED, e, "checksum repair refused (error %ld)", -r);
		return FM_EXIT_FAIL;
	}
	if (!check(&stored, &computed)) {
		u64 e[4] = { stored, computed, 0, 0 };
		fm_finding(FM_SEV_ERROR, CODE_FIX_FAILED, e, "re-check after repair failed: stored 0x%04x, computed 0x%04x",
			   stored, computed);
		return FM_EXIT_FAIL;
	}
	fm_log("re-check passed: stored 0x%04x = computed 0x%04x", stored, computed);
	return FM_EXIT_FIXED;
}
