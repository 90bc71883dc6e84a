/*
 * Quick memory test: address-in-address, then the inverted address, each
 * written over the whole range before it is read back (so address-line
 * aliasing shows up as well as stuck data bits). Failing qwords are
 * collected into page-aligned, merged ranges.
 *
 * Built for the firmware and, with FW_HOST_TEST, into a host harness that
 * simulates stuck bits (firmware/host-test/memtest_host.c).
 */
#include "fw.h"

#ifdef FW_HOST_TEST
u64 host_mem_read(u64 addr);
void host_mem_write(u64 addr, u64 v);
#define MEM_RD(a)    host_mem_read(a)
#define MEM_WR(a, v) host_mem_write((a), (v))
#else
#define MEM_RD(a)    (*(volatile u64 *)(uintptr_t)(a))
#define MEM_WR(a, v) (*(volatile u64 *)(uintptr_t)(a) = (v))
#endif

#define PAGE 0x1000ull

static u32 next_order;

static void merge_at(struct memtest_result *res, u32 i)
{
	/* ranges i and i+1 touch: fold i+1 into i */
	struct memtest_range *a = &res->r[i], *b = &res->r[i + 1];
	if (b->order < a->order) {
		a->first_bad = b->first_bad;
		a->expected = b->expected;
		a->actual = b->actual;
		a->order = b->order;
	}
	a->end = b->end;
	for (u32 j = i + 1; j + 1 < res->count; j++)
		res->r[j] = res->r[j + 1];
	res->count--;
}

static void note_bad(struct memtest_result *res, u64 addr, u64 expected, u64 actual)
{
	u64 page = addr & ~(PAGE - 1), pend = page + PAGE;
	u32 i;
	for (i = 0; i < res->count; i++) {
		struct memtest_range *r = &res->r[i];
		if (page >= r->base && page < r->end)
			return;                       /* already covered */
		if (r->end == page) {
			r->end = pend;
			if (i + 1 < res->count && res->r[i + 1].base == pend)
				merge_at(res, i);
			return;
		}
		if (r->base == pend) {
			r->base = page;
			return;                       /* previous range ends before page */
		}
		if (r->base > page)
			break;
	}
	if (res->count == MEMTEST_MAX_RANGES) {
		/* Table full: grow the nearest range over the gap (errs on the side
		 * of fencing off more memory, never less). */
		res->overflow = true;
		u32 best = 0;
		u64 bestgap = ~0ull;
		for (u32 j = 0; j < res->count; j++) {
			struct memtest_range *r = &res->r[j];
			u64 gap = page >= r->end ? page - r->end : r->base - pend;
			if (gap < bestgap) {
				bestgap = gap;
				best = j;
			}
		}
		struct memtest_range *r = &res->r[best];
		if (page < r->base)
			r->base = page;
		else
			r->end = pend;
		return;
	}
	for (u32 j = res->count; j > i; j--)
		res->r[j] = res->r[j - 1];
	res->r[i] = (struct memtest_range){ page, pend, addr, expected, actual, next_order++ };
	res->count++;
}

/*
 * The verify half of a pass is a separate, never-inlined, never-cloned
 * function so a debugger can stop between the write and the verify pass
 * (test/firmware/qemu-firmware.test.ts injects stuck bits there via gdb).
 */
void memtest_verify_pass(u64 start, u64 end, u64 invert, struct memtest_result *res)
	__attribute__((noinline, noclone));
void memtest_verify_pass(u64 start, u64 end, u64 invert, struct memtest_result *res)
{
	for (u64 a = start; a < end; a += 8) {
		u64 v = MEM_RD(a);
		if (v != (a ^ invert))
			note_bad(res, a, a ^ invert, v);
	}
}

static void run_pattern(u64 start, u64 end, u64 invert, struct memtest_result *res)
{
	for (u64 a = start; a < end; a += 8)
		MEM_WR(a, a ^ invert);
	memtest_verify_pass(start, end, invert, res);
}

void memtest_run(u64 start, u64 end, struct memtest_result *res)
{
	start = (start + 7) & ~7ull;
	end &= ~7ull;
	if (end <= start)
		return;
	run_pattern(start, end, 0, res);
	run_pattern(start, end, ~0ull, res);
}
