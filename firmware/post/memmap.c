/* e820-style memory map: sorted, non-overlapping, adjacent equal types merged. */
#include "fw.h"

void memmap_init(struct memmap *m)
{
	m->count = 0;
}

/* Set [base, base+length) to `type`, splitting whatever it overlaps. */
bool memmap_set(struct memmap *m, u64 base, u64 length, u32 type)
{
	if (length == 0)
		return true;
	u64 end = base + length;
	struct bootinfo_e820 out[BOOTINFO_MAX_E820 * 2 + 1];
	u32 n = 0;
	for (u32 i = 0; i < m->count; i++) {
		const struct bootinfo_e820 *e = &m->e[i];
		u64 eb = e->base, ee = e->base + e->length;
		if (ee <= base || eb >= end) {
			out[n++] = *e;
			continue;
		}
		if (eb < base)
			out[n++] = (struct bootinfo_e820){ eb, base - eb, e->type, 1 };
		if (ee > end)
			out[n++] = (struct bootinfo_e820){ end, ee - end, e->type, 1 };
	}
	out[n++] = (struct bootinfo_e820){ base, length, type, 1 };

	/* insertion sort by base */
	for (u32 i = 1; i < n; i++) {
		struct bootinfo_e820 t = out[i];
		u32 j = i;
		while (j > 0 && out[j - 1].base > t.base) {
			out[j] = out[j - 1];
			j--;
		}
		out[j] = t;
	}
	/* merge adjacent entries of the same type */
	u32 k = 0;
	for (u32 i = 0; i < n; i++) {
		if (k > 0 && out[k - 1].type == out[i].type &&
		    out[k - 1].base + out[k - 1].length == out[i].base)
			out[k - 1].length += out[i].length;
		else
			out[k++] = out[i];
	}
	if (k > BOOTINFO_MAX_E820)
		return false;
	for (u32 i = 0; i < k; i++)
		m->e[i] = out[i];
	m->count = k;
	return true;
}

bool memmap_range_is(const struct memmap *m, u64 base, u64 length, u32 type)
{
	u64 end = base + length;
	if (end < base)
		return false;
	for (u32 i = 0; i < m->count; i++) {
		const struct bootinfo_e820 *e = &m->e[i];
		if (e->type == type && base >= e->base && end <= e->base + e->length)
			return true;
	}
	return false;
}

const char *e820_type_name(u32 type)
{
	switch (type) {
	case E820_USABLE:
		return "usable";
	case E820_RESERVED:
		return "reserved";
	case E820_BAD:
		return "bad";
	default:
		return "unknown";
	}
}
