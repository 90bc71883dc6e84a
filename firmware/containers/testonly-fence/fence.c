/*
 * testonly-fence: pretends the last page it was lent is bad and asks for it
 * to be fenced (must succeed, exit FIXED); asks to fence a page it was not
 * lent (must be refused with -FM_EPERM); then a misaligned range (-FM_EINVAL).
 */
#include "fm.h"

static struct fm_ram_range r[32];

int main(void)
{
	long n = fm_ram_ranges(r, 32);
	if (n <= 0) {
		fm_finding(FM_SEV_ERROR, 0x0601, NULL, "no RAM lent (%ld)", n);
		return FM_EXIT_FAIL;
	}
	if (n > 32)
		n = 32;
	struct fm_ram_range *last = &r[n - 1];
	u64 page = last->phys + last->length - 4096;
	u64 d[4] = { page, 4096, page, 1 };
	fm_finding(FM_SEV_ERROR, 0x0602, d, "pretend bad RAM [mem 0x%lx-0x%lx]", page, page + 4095);
	u64 ok[2] = { page, 4096 };
	long a = fm_fix(FIX_FENCE_RAM, ok, 2);
	u64 foreign[2] = { 0x200000, 4096 };   /* the OS image: never lent */
	long b = fm_fix(FIX_FENCE_RAM, foreign, 2);
	u64 odd[2] = { page + 8, 4096 };
	long c = fm_fix(FIX_FENCE_RAM, odd, 2);
	fm_log("fence lent page: %ld, fence foreign page: %ld, fence misaligned: %ld", a, b, c);
	if (a != 0 || b != -FM_EPERM || c != -FM_EINVAL)
		return FM_EXIT_FAIL;
	return FM_EXIT_FIXED;
}
