/*
 * Host harness for the firmware memory test and e820 map code
 * (firmware/post/memtest.c, firmware/post/memmap.c compiled with
 * -DFW_HOST_TEST). It simulates RAM between --test START END with stuck
 * bits, runs the same steps as POST, and prints one result per line:
 *
 *   range BASE END FIRST_BAD EXPECTED ACTUAL     (END exclusive, hex)
 *   overflow 0|1
 *   e820 BASE LENGTH TYPE
 *
 * usage: memtest_host --ram-mib N --test START END
 *                     [--stuck BASE LEN AND_MASK OR_MASK]...
 * A read of a qword in a stuck window returns (stored & AND_MASK) | OR_MASK.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "fw.h"

struct stuck { u64 base, len, and_mask, or_mask; };

static u64 sim_base, sim_end;
static u64 *sim;
static struct stuck stucks[16];
static int nstuck;

u64 host_mem_read(u64 addr);
void host_mem_write(u64 addr, u64 v);

u64 host_mem_read(u64 addr)
{
	if (addr < sim_base || addr >= sim_end) {
		fprintf(stderr, "read outside simulated RAM: 0x%llx\n", (unsigned long long)addr);
		exit(2);
	}
	u64 v = sim[(addr - sim_base) / 8];
	for (int i = 0; i < nstuck; i++)
		if (addr >= stucks[i].base && addr < stucks[i].base + stucks[i].len)
			v = (v & stucks[i].and_mask) | stucks[i].or_mask;
	return v;
}

void host_mem_write(u64 addr, u64 v)
{
	if (addr < sim_base || addr >= sim_end) {
		fprintf(stderr, "write outside simulated RAM: 0x%llx\n", (unsigned long long)addr);
		exit(2);
	}
	sim[(addr - sim_base) / 8] = v;
}

static u64 num(const char *s)
{
	return strtoull(s, NULL, 0);
}

int main(int argc, char **argv)
{
	u64 ram_mib = 64, tstart = 0x100000, tend = 0x1000000;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--ram-mib") && i + 1 < argc) {
			ram_mib = num(argv[++i]);
		} else if (!strcmp(argv[i], "--test") && i + 2 < argc) {
			tstart = num(argv[++i]);
			tend = num(argv[++i]);
		} else if (!strcmp(argv[i], "--stuck") && i + 4 < argc && nstuck < 16) {
			struct stuck *s = &stucks[nstuck++];
			s->base = num(argv[++i]);
			s->len = num(argv[++i]);
			s->and_mask = num(argv[++i]);
			s->or_mask = num(argv[++i]);
		} else {
			fprintf(stderr, "bad argument: %s\n", argv[i]);
			return 2;
		}
	}
	sim_base = tstart;
	sim_end = tend;
	sim = calloc((tend - tstart) / 8, 8);
	if (!sim)
		return 3;

	/* Same map as POST's step_memory_map for a machine without RAM above 4 GiB. */
	struct memmap map;
	memmap_init(&map);
	memmap_set(&map, FW_RESERVED_BASE, FW_RESERVED_END, E820_RESERVED);
	memmap_set(&map, FW_RESERVED_END, LOW_RAM_END - FW_RESERVED_END, E820_USABLE);
	memmap_set(&map, LOW_RAM_END, HIGH_RAM_BASE - LOW_RAM_END, E820_RESERVED);
	memmap_set(&map, HIGH_RAM_BASE, (ram_mib << 20) - HIGH_RAM_BASE, E820_USABLE);
	memmap_set(&map, LAPIC_DEFAULT_BASE, 0x1000, E820_RESERVED);
	memmap_set(&map, ROM_HIGH_BASE, ROM_SIZE, E820_RESERVED);

	struct memtest_result res;
	memset(&res, 0, sizeof(res));
	memtest_run(tstart, tend, &res);
	for (u32 i = 0; i < res.count; i++) {
		const struct memtest_range *r = &res.r[i];
		printf("range 0x%llx 0x%llx 0x%llx 0x%llx 0x%llx\n", (unsigned long long)r->base,
		       (unsigned long long)r->end, (unsigned long long)r->first_bad,
		       (unsigned long long)r->expected, (unsigned long long)r->actual);
		memmap_set(&map, r->base, r->end - r->base, E820_BAD);
	}
	printf("overflow %d\n", res.overflow ? 1 : 0);
	for (u32 i = 0; i < map.count; i++)
		printf("e820 0x%llx 0x%llx %u\n", (unsigned long long)map.e[i].base,
		       (unsigned long long)map.e[i].length, map.e[i].type);
	free(sim);
	return 0;
}
