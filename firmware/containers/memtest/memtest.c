/*
 * memtest: March C- over every RAM range the OS lends (SYS_RAM_RANGES: all
 * free RAM below 4 GiB except the OS, this container and a few frames kept
 * for page tables). Each bad page-aligned range is reported and fenced
 * (FIX_FENCE_RAM): the OS withholds it and hands it off as e820 type 5.
 */
#include "fm.h"
#include "march.h"

#define CODE_BAD_RANGE   0x0501
#define CODE_NO_GRANT    0x0502
#define CODE_FENCE_FAIL  0x0503
#define CODE_MORE        0x0504

static struct fm_ram_range ranges[32];
static struct march_result res;

static void print_kib(char *buf, u32 size, u64 bytes)
{
	fm_snprintf(buf, size, "%lu KiB", bytes >> 10);
}

int main(void)
{
	long n = fm_ram_ranges(ranges, 32);
	if (n < 0) {
		u64 d[4] = { (u64)-n, 0, 0, 0 };
		fm_finding(FM_SEV_ERROR, CODE_NO_GRANT, d, "no RAM lent for testing (error %ld)", -n);
		return FM_EXIT_FAIL;
	}
	if (n > 32)
		n = 32;
	u64 total = 0;
	for (long i = 0; i < n; i++)
		total += ranges[i].length;
	char kib[32];
	print_kib(kib, sizeof(kib), total);
	fm_log("March C- over %ld range%s, %s", n, n == 1 ? "" : "s", kib);
	for (long i = 0; i < n && i < 8; i++)
		fm_log("  [mem 0x%016lx-0x%016lx]", ranges[i].phys, ranges[i].phys + ranges[i].length - 1);
	for (long i = 0; i < n; i++)
		march_c_minus((u64 *)ranges[i].virt, ranges[i].phys, ranges[i].length / 8, &res);
	if (!res.count) {
		fm_log("no faults");
		return FM_EXIT_PASS;
	}
	u32 fenced = 0;
	for (u32 i = 0; i < res.count; i++) {
		struct march_range *r = &res.r[i];
		u64 d[4] = { r->base, r->end - r->base, r->first_bad, r->mask };
		if (i < 4)
			fm_finding(FM_SEV_ERROR, CODE_BAD_RANGE, d,
				   "bad RAM [mem 0x%lx-0x%lx], lowest bad address 0x%lx, bits 0x%lx", r->base, r->end - 1,
				   r->first_bad, r->mask);
		u64 args[2] = { r->base, r->end - r->base };
		long f = fm_fix(FIX_FENCE_RAM, args, 2);
		if (f < 0) {
			u64 e[4] = { r->base, r->end - r->base, (u64)-f, 0 };
			fm_finding(FM_SEV_ERROR, CODE_FENCE_FAIL, e, "fencing [mem 0x%lx-0x%lx] failed (error %ld)", r->base,
				   r->end - 1, -f);
		} else {
			fenced++;
		}
	}
	if (res.count > 4) {
		u64 d[4] = { res.count, res.overflow, res.failures, 0 };
		fm_finding(FM_SEV_ERROR, CODE_MORE, d, "%u bad ranges in all%s, %lu failing reads", res.count,
			   res.overflow ? " (some widened)" : "", res.failures);
	}
	fm_log("%u bad range%s, %u fenced", res.count, res.count == 1 ? "" : "s", fenced);
	/* Fencing keeps the bad cells out of use; it does not repair the DIMM: still a failure. */
	return FM_EXIT_FAIL;
}
