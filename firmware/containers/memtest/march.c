/*
 * March C- (van de Goor): six march elements with the all-zeros / all-ones
 * qword backgrounds. Detects stuck-at, transition, address-decoder and
 * (inter-word) coupling faults. Failing qwords are collected as
 * page-aligned physical ranges, merged when they touch or overlap; when
 * more than MARCH_MAX_RANGES disjoint ranges exist, the range nearest the
 * new failure is widened to cover it (never dropped).
 */
#include "march.h"

#ifdef MARCH_HOST
u64 host_rd(u64 *p);
void host_wr(u64 *p, u64 v);
#define RD(p) host_rd(p)
#define WR(p, v) host_wr(p, v)
#else
#define RD(p) (*(volatile u64 *)(p))
#define WR(p, v) (*(volatile u64 *)(p) = (v))
#endif

#define PAGE 4096ull

static void merge_neighbours(struct march_result *res, u32 i)
{
	for (u32 j = 0; j < res->count; j++) {
		if (j == i)
			continue;
		struct march_range *a = &res->r[i], *b = &res->r[j];
		if (b->base <= a->end && a->base <= b->end) {
			if (b->base < a->base)
				a->base = b->base;
			if (b->end > a->end)
				a->end = b->end;
			a->mask |= b->mask;
			if (b->first_bad < a->first_bad)
				a->first_bad = b->first_bad;
			res->r[j] = res->r[--res->count];
			if (i == res->count)
				i = j;
			j = (u32)-1;       /* restart: the widened range may touch others */
		}
	}
}

void march_record(struct march_result *res, u64 phys, u64 expected, u64 actual)
{
	u64 page = phys & ~(PAGE - 1);
	u64 diff = expected ^ actual;
	res->failures++;
	for (u32 i = 0; i < res->count; i++) {
		struct march_range *r = &res->r[i];
		if (page >= r->base && page < r->end) {
			r->mask |= diff;
			if (phys < r->first_bad)
				r->first_bad = phys;
			return;
		}
	}
	for (u32 i = 0; i < res->count; i++) {
		struct march_range *r = &res->r[i];
		if (page + PAGE == r->base || page == r->end) {
			if (page < r->base)
				r->base = page;
			else
				r->end = page + PAGE;
			r->mask |= diff;
			if (phys < r->first_bad)
				r->first_bad = phys;
			merge_neighbours(res, i);
			return;
		}
	}
	if (res->count < MARCH_MAX_RANGES) {
		struct march_range *r = &res->r[res->count++];
		r->base = page;
		r->end = page + PAGE;
		r->first_bad = phys;
		r->mask = diff;
		return;
	}
	res->overflow = true;
	u32 best = 0;
	u64 best_gap = ~0ul;
	for (u32 i = 0; i < res->count; i++) {
		struct march_range *r = &res->r[i];
		u64 gap = page < r->base ? r->base - page : page - r->end;
		if (gap < best_gap) {
			best_gap = gap;
			best = i;
		}
	}
	struct march_range *r = &res->r[best];
	if (page < r->base)
		r->base = page;
	else
		r->end = page + PAGE;
	r->mask |= diff;
	if (phys < r->first_bad)
		r->first_bad = phys;
	merge_neighbours(res, best);
}

static inline void check(u64 *p, u64 *virt, u64 phys, u64 expect, struct march_result *res)
{
	u64 v = RD(p);
	if (v != expect)
		march_record(res, phys + (u64)(p - virt) * 8, expect, v);
}

void march_c_minus(u64 *virt, u64 phys, u64 words, struct march_result *res)
{
	const u64 zero = 0, ones = ~0ul;
	u64 *end = virt + words;
	u64 *p;
	for (p = virt; p < end; p++)                 /* M0 ⇕ (w0) */
		WR(p, zero);
	for (p = virt; p < end; p++) {               /* M1 ⇑ (r0, w1) */
		check(p, virt, phys, zero, res);
		WR(p, ones);
	}
	for (p = virt; p < end; p++) {               /* M2 ⇑ (r1, w0) */
		check(p, virt, phys, ones, res);
		WR(p, zero);
	}
	for (p = end; p-- > virt;) {                 /* M3 ⇓ (r0, w1) */
		check(p, virt, phys, zero, res);
		WR(p, ones);
	}
	for (p = end; p-- > virt;) {                 /* M4 ⇓ (r1, w0) */
		check(p, virt, phys, ones, res);
		WR(p, zero);
	}
	for (p = virt; p < end; p++)                 /* M5 ⇕ (r0) */
		check(p, virt, phys, zero, res);
}
