/*
 * Host harness for firmware/containers/memtest/march.c
 * (test/os/march-host.test.ts): March C- over a simulated RAM buffer with
 * injected faults, printing the merged bad ranges.
 *   march_host --pages N [--base PHYS] [--stuck OFF MASK VALUE]... [--couple AGG VICTIM]...
 *              [--record PHYS]...
 * --stuck: the bits in MASK of the qword at byte offset OFF always read VALUE.
 * --couple: a write to qword AGG (byte offset) inverts qword VICTIM (coupling fault).
 * --record: call march_record() directly (range merging without a march).
 * Output: "range BASE END FIRST MASK" lines, "overflow 0|1", "failures N".
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "march.h"

#define MAXF 64
static u64 *mem;
static u64 nwords;
static struct { u64 word, mask, value; } stuck[MAXF];
static struct { u64 agg, victim; } couple[MAXF];
static int nstuck, ncouple;

static u64 apply(u64 w, u64 v)
{
	for (int i = 0; i < nstuck; i++)
		if (stuck[i].word == w)
			v = (v & ~stuck[i].mask) | (stuck[i].value & stuck[i].mask);
	return v;
}

u64 host_rd(u64 *p)
{
	u64 w = (u64)(p - mem);
	return apply(w, mem[w]);
}

void host_wr(u64 *p, u64 v)
{
	u64 w = (u64)(p - mem);
	mem[w] = v;
	for (int i = 0; i < ncouple; i++)
		if (couple[i].agg == w && couple[i].victim < nwords)
			mem[couple[i].victim] = ~mem[couple[i].victim];
}

int main(int argc, char **argv)
{
	u64 pages = 16, base = 0x100000;
	static struct march_result res;
	u64 records[MAXF];
	int nrec = 0;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--pages"))
			pages = strtoull(argv[++i], 0, 0);
		else if (!strcmp(argv[i], "--base"))
			base = strtoull(argv[++i], 0, 0);
		else if (!strcmp(argv[i], "--stuck") && nstuck < MAXF) {
			stuck[nstuck].word = strtoull(argv[++i], 0, 0) / 8;
			stuck[nstuck].mask = strtoull(argv[++i], 0, 0);
			stuck[nstuck].value = strtoull(argv[++i], 0, 0);
			nstuck++;
		} else if (!strcmp(argv[i], "--couple") && ncouple < MAXF) {
			couple[ncouple].agg = strtoull(argv[++i], 0, 0) / 8;
			couple[ncouple].victim = strtoull(argv[++i], 0, 0) / 8;
			ncouple++;
		} else if (!strcmp(argv[i], "--record") && nrec < MAXF) {
			records[nrec++] = strtoull(argv[++i], 0, 0);
		} else {
			fprintf(stderr, "bad argument %s\n", argv[i]);
			return 2;
		}
	}
	if (nrec) {
		for (int i = 0; i < nrec; i++)
			march_record(&res, records[i], 0, 1);
	} else {
		nwords = pages * 512;
		mem = calloc(nwords, 8);
		for (u64 i = 0; i < nwords; i++)
			mem[i] = 0x5a5a5a5a5a5a5a5aull ^ i;   /* garbage before the test */
		march_c_minus(mem, base, nwords, &res);
	}
	for (u32 i = 0; i < res.count; i++)
		printf("range 0x%lx 0x%lx 0x%lx 0x%lx\n", res.r[i].base, res.r[i].end, res.r[i].first_bad, res.r[i].mask);
	printf("overflow %d\nfailures %lu\n", res.overflow, res.failures);
	return 0;
}
