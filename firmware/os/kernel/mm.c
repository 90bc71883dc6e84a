/*
 * Physical frame allocator: one bit per 4 KiB frame below 4 GiB (1 = not
 * available). Built from the boot-info e820 map: only whole frames inside
 * usable (type 1) entries are ever free; reserved, bad (type 5), MMIO and
 * the OS image start out taken and are never handed out. Frames fenced by a
 * container's FIX_FENCE_RAM stay taken for good and are reported as type 5
 * in the handoff memory map.
 */
#include "os.h"

#define MAX_FRAMES (1u << 20)                /* 4 GiB */
#define MAX_FENCES 32

static u64 bitmap[MAX_FRAMES / 64] __attribute__((section(".bss.pagealigned.bitmap"), aligned(4096)));
static u32 nframes;                           /* frames covered (highest usable + 1) */
static u64 free_count, total_usable;
static u32 hint;
static u64 ram_top;
static u64 os_start, os_end;

static const struct bootinfo_e820 *fw_map;
static u32 fw_map_count;

static struct { u64 base, end; } fences[MAX_FENCES];
static u32 nfences;

static inline bool bit_get(u32 f) { return (bitmap[f >> 6] >> (f & 63)) & 1; }
static inline void bit_set(u32 f) { bitmap[f >> 6] |= 1ull << (f & 63); }
static inline void bit_clear(u32 f) { bitmap[f >> 6] &= ~(1ul << (f & 63)); }

void mm_init(const struct bootinfo *bi, const struct bootinfo_e820 *e820, u32 n)
{
	fw_map = e820;
	fw_map_count = n;
	os_start = bi->next_stage_start & PAGE_MASK;
	os_end = (bi->next_stage_end + PAGE_SIZE - 1) & PAGE_MASK;
	memset(bitmap, 0xff, sizeof(bitmap));
	for (u32 i = 0; i < n; i++) {
		if (e820[i].type != E820_USABLE)
			continue;
		u64 b = (e820[i].base + PAGE_SIZE - 1) & PAGE_MASK;
		u64 e = (e820[i].base + e820[i].length) & PAGE_MASK;
		if (e > PHYS_MAP_SIZE)
			e = PHYS_MAP_SIZE;
		if (b < PAGE_SIZE)
			b = PAGE_SIZE;                   /* never hand out frame 0 */
		for (u64 a = b; a < e; a += PAGE_SIZE) {
			if (a >= os_start && a < os_end)
				continue;
			u32 f = (u32)(a >> 12);
			bit_clear(f);
			free_count++;
			if (f + 1 > nframes)
				nframes = f + 1;
		}
		if (e > ram_top)
			ram_top = e;
	}
	total_usable = free_count;
	/* the OS image itself counts as usable RAM it holds */
	total_usable += (os_end - os_start) >> 12;
}

u64 mm_ram_top(void) { return ram_top; }
u64 frames_free_count(void) { return free_count; }
u64 frames_total(void) { return total_usable; }

bool frame_is_free(u64 phys)
{
	u32 f = (u32)(phys >> 12);
	return phys < PHYS_MAP_SIZE && f < nframes && !bit_get(f);
}

bool frame_claim(u64 phys)
{
	if (!frame_is_free(phys))
		return false;
	bit_set((u32)(phys >> 12));
	free_count--;
	return true;
}

u64 frame_alloc(void)
{
	for (u32 f = hint; f < nframes; f++) {
		if (bitmap[f >> 6] == ~0ul) {
			f |= 63;
			continue;
		}
		if (!bit_get(f)) {
			bit_set(f);
			free_count--;
			hint = f + 1;
			u64 p = (u64)f << 12;
			memset(phys_to_virt(p), 0, PAGE_SIZE);
			return p;
		}
	}
	return 0;
}

u64 frame_alloc_contig(u32 count)
{
	if (!count)
		return 0;
	u32 run = 0;
	for (u32 f = 1; f < nframes; f++) {
		if (bit_get(f)) {
			run = 0;
			continue;
		}
		if (++run == count) {
			u32 first = f + 1 - count;
			for (u32 g = first; g <= f; g++)
				bit_set(g);
			free_count -= count;
			return (u64)first << 12;
		}
	}
	return 0;
}

static bool is_fenced(u64 p)
{
	for (u32 i = 0; i < nfences; i++)
		if (p >= fences[i].base && p < fences[i].end)
			return true;
	return false;
}

void frame_free(u64 phys)
{
	u32 f = (u32)(phys >> 12);
	if (phys & (PAGE_SIZE - 1) || f >= nframes || !bit_get(f))
		panic("frame_free(0x%lx): not an allocated frame", phys);
	if (is_fenced(phys))
		return;                              /* bad RAM never goes back */
	if (phys >= os_start && phys < os_end)
		panic("frame_free(0x%lx): OS image", phys);
	bit_clear(f);
	free_count++;
	if (f < hint)
		hint = f;
}

void frame_free_contig(u64 phys, u32 count)
{
	for (u32 i = 0; i < count; i++)
		frame_free(phys + ((u64)i << 12));
}

/* Fence one frame the caller holds (lent to a container): it stays taken. */
void frame_fence(u64 phys)
{
	u32 f = (u32)(phys >> 12);
	if (f >= nframes || !bit_get(f))
		panic("frame_fence(0x%lx): frame not held", phys);
	if (is_fenced(phys))
		return;
	for (u32 i = 0; i < nfences; i++) {
		if (fences[i].end == phys) {
			fences[i].end += PAGE_SIZE;
			return;
		}
		if (fences[i].base == phys + PAGE_SIZE) {
			fences[i].base = phys;
			return;
		}
	}
	if (nfences == MAX_FENCES)
		panic("too many fenced ranges");
	fences[nfences].base = phys;
	fences[nfences].end = phys + PAGE_SIZE;
	nfences++;
}

u32 mm_fenced_ranges(u64 *base, u64 *len, u32 max)
{
	u32 n = 0;
	for (u32 i = 0; i < nfences && n < max; i++, n++) {
		base[n] = fences[i].base;
		len[n] = fences[i].end - fences[i].base;
	}
	return n;
}

static u32 emit(struct handoff_e820 *out, u32 n, u32 max, u64 base, u64 len, u32 type)
{
	if (!len)
		return n;
	if (n && out[n - 1].type == type && out[n - 1].base + out[n - 1].length == base) {
		out[n - 1].length += len;
		return n;
	}
	if (n == max)
		panic("handoff memory map full");
	out[n].base = base;
	out[n].length = len;
	out[n].type = type;
	out[n].attr = 1;
	return n + 1;
}

/* Classify one frame of a usable e820 entry as the handoff will report it. */
static u32 frame_type(u64 p)
{
	if (is_fenced(p))
		return HANDOFF_E820_BAD;
	if (p >= PHYS_MAP_SIZE)
		return HANDOFF_E820_USABLE;         /* above 4 GiB: never touched by the OS */
	u32 f = (u32)(p >> 12);
	if (f < nframes && !bit_get(f))
		return HANDOFF_E820_USABLE;
	return HANDOFF_E820_OS;                  /* the OS image, or frames still held */
}

/* The firmware's map with OS-held frames and fenced ranges split out. */
u32 mm_build_handoff_map(struct handoff_e820 *out, u32 max)
{
	u32 n = 0;
	for (u32 i = 0; i < fw_map_count; i++) {
		const struct bootinfo_e820 *e = &fw_map[i];
		u64 end = e->base + e->length;
		if (e->type != E820_USABLE) {
			n = emit(out, n, max, e->base, e->length, e->type);
			continue;
		}
		/* partial pages at the edges keep the firmware's type */
		u64 b = (e->base + PAGE_SIZE - 1) & PAGE_MASK;
		u64 te = end & PAGE_MASK;
		if (te <= b) {
			n = emit(out, n, max, e->base, e->length, e->type);
			continue;
		}
		n = emit(out, n, max, e->base, b - e->base, E820_USABLE);
		u64 run = b;
		u32 run_type = frame_type(b);
		for (u64 p = b + PAGE_SIZE; p < te; p += PAGE_SIZE) {
			if (p >= PHYS_MAP_SIZE && run_type == HANDOFF_E820_USABLE)
				break;                       /* above 4 GiB: plain usable RAM */
			u32 t = frame_type(p);
			if (t != run_type) {
				n = emit(out, n, max, run, p - run, run_type);
				run = p;
				run_type = t;
			}
		}
		n = emit(out, n, max, run, te - run, run_type);
		n = emit(out, n, max, te, end - te, E820_USABLE);
	}
	return n;
}
