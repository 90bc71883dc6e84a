/* March C- memory test core (march.c), shared with the host test harness. */
#ifndef MEMTEST_MARCH_H
#define MEMTEST_MARCH_H

#include "types.h"

#define MARCH_MAX_RANGES 16

struct march_range {
	u64 base, end;        /* physical, page-aligned, end exclusive */
	u64 first_bad;        /* lowest failing physical address in the range */
	u64 mask;             /* OR of (expected ^ actual) over all failures in the range */
};

struct march_result {
	u32 count;
	bool overflow;        /* more disjoint ranges than MARCH_MAX_RANGES: the nearest one was widened */
	u64 failures;         /* failing reads */
	struct march_range r[MARCH_MAX_RANGES];
};

/* Record one failing qword at physical address phys. */
void march_record(struct march_result *res, u64 phys, u64 expected, u64 actual);
/* March C- over words qwords at virt (physical address phys):
 * {up/down w0} {up r0,w1} {up r1,w0} {down r0,w1} {down r1,w0} {up/down r0}. */
void march_c_minus(u64 *virt, u64 phys, u64 words, struct march_result *res);

#endif
