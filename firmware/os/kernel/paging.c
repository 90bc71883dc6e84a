/*
 * The OS's own 4-level page tables (replacing the firmware's identity map
 * and the boot tables of entry.S):
 *   PML4[256]  direct map of physical 0-4 GiB, 2 MiB pages, supervisor,
 *              NX; 3-4 GiB uncached (MMIO: LAPIC, ROM)
 *   PML4[511]  the OS image at KERNEL_VMA + physical, 4 KiB pages, W^X
 *              (text R-X, rodata R--, data/bss RW-)
 *   PML4[0-255] empty: the user half, private to each container's address
 *              space (as_create copies only the supervisor half).
 * Nothing in the supervisor half has the U bit, so ring 3 can never touch
 * the OS, whatever the container maps.
 */
#include "os.h"

#define PT_PAGES 2                              /* kernel image up to 4 MiB */

static u64 k_pml4[512] __attribute__((section(".bss.pagealigned.pt"), aligned(4096)));
static u64 k_pdpt_dm[512] __attribute__((section(".bss.pagealigned.pt"), aligned(4096)));
static u64 k_pd_dm[4][512] __attribute__((section(".bss.pagealigned.pt"), aligned(4096)));
static u64 k_pdpt_img[512] __attribute__((section(".bss.pagealigned.pt"), aligned(4096)));
static u64 k_pd_img[512] __attribute__((section(".bss.pagealigned.pt"), aligned(4096)));
static u64 k_pt_img[PT_PAGES][512] __attribute__((section(".bss.pagealigned.pt"), aligned(4096)));
static u64 nx;

extern const char _kernel_start[], _text_end[], _rodata_end[], _kernel_end[];
extern const char boot_stack_guard[];
extern u8 trap_stack_area[];

static inline u64 pa_of(const void *v) { return virt_to_phys(v); }

void paging_init(u64 kstart, u64 kend)
{
	nx = cpu_has_nx ? PTE_NX : 0;
	/* direct map */
	k_pml4[256] = pa_of(k_pdpt_dm) | PTE_P | PTE_W;
	for (u32 g = 0; g < 4; g++) {
		k_pdpt_dm[g] = pa_of(k_pd_dm[g]) | PTE_P | PTE_W;
		for (u32 i = 0; i < 512; i++) {
			u64 pa = ((u64)g << 30) | ((u64)i << 21);
			k_pd_dm[g][i] = pa | PTE_P | PTE_W | PTE_PS | nx | (g == 3 ? PTE_PCD | PTE_PWT : 0);
		}
	}
	/* image */
	u64 vstart = (u64)(uintptr_t)_kernel_start, vend = (u64)(uintptr_t)_kernel_end;
	if (vstart - KERNEL_VMA != kstart || ((vstart >> 21) & 511) + PT_PAGES > 512 ||
	    ((vend - 1) >> 21) - (vstart >> 21) >= PT_PAGES)
		panic("kernel image 0x%lx-0x%lx does not fit the page-table layout", kstart, kend);
	k_pml4[511] = pa_of(k_pdpt_img) | PTE_P | PTE_W;
	k_pdpt_img[510] = pa_of(k_pd_img) | PTE_P | PTE_W;
	u32 pd0 = (u32)((vstart >> 21) & 511);
	for (u32 t = 0; t < PT_PAGES; t++)
		k_pd_img[pd0 + t] = pa_of(k_pt_img[t]) | PTE_P | PTE_W;
	for (u64 v = vstart; v < vend; v += PAGE_SIZE) {
		if (v == (u64)(uintptr_t)boot_stack_guard || v == (u64)(uintptr_t)trap_stack_area)
			continue;                    /* stack guard pages: overflow faults (#DF on IST1) */
		u64 flags = PTE_P;
		if (v >= (u64)(uintptr_t)_rodata_end)
			flags |= PTE_W | nx;
		else if (v >= (u64)(uintptr_t)_text_end)
			flags |= nx;
		u32 t = (u32)((v >> 21) - (vstart >> 21));
		k_pt_img[t][(v >> 12) & 511] = (v - KERNEL_VMA) | flags;
	}
	write_cr3(pa_of(k_pml4));
}

u64 kernel_cr3(void)
{
	return pa_of(k_pml4);
}

u64 as_create(void)
{
	u64 p = frame_alloc();
	if (!p)
		return 0;
	u64 *t = phys_to_virt(p);
	for (u32 i = 256; i < 512; i++)
		t[i] = k_pml4[i];
	return p;
}

/* Walk to the leaf PTE of va, allocating tables when create is set. */
static u64 *walk(u64 pml4, u64 va, bool create)
{
	if (va >= 0x0000800000000000ul)
		return NULL;                         /* never the supervisor half */
	u64 *table = phys_to_virt(pml4);
	for (int level = 3; level > 0; level--) {
		u32 idx = (u32)((va >> (12 + 9 * level)) & 511);
		u64 e = table[idx];
		if (!(e & PTE_P)) {
			if (!create)
				return NULL;
			u64 f = frame_alloc();
			if (!f)
				return NULL;
			e = f | PTE_P | PTE_W | PTE_U;
			table[idx] = e;
		}
		if (e & PTE_PS)
			return NULL;
		table = phys_to_virt(e & PTE_ADDR);
	}
	return &table[(va >> 12) & 511];
}

bool as_map(u64 pml4, u64 va, u64 pa, u64 flags)
{
	u64 *pte = walk(pml4, va, true);
	if (!pte || (*pte & PTE_P))
		return false;
	if (!cpu_has_nx)
		flags &= ~PTE_NX;
	*pte = (pa & PTE_ADDR) | flags | PTE_P;
	return true;
}

u64 *as_lookup(u64 pml4, u64 va)
{
	u64 *pte = walk(pml4, va, false);
	return (pte && (*pte & PTE_P)) ? pte : NULL;
}

void as_destroy(u64 pml4)
{
	u64 *l4 = phys_to_virt(pml4);
	for (u32 i = 0; i < 256; i++) {
		if (!(l4[i] & PTE_P))
			continue;
		u64 *l3 = phys_to_virt(l4[i] & PTE_ADDR);
		for (u32 j = 0; j < 512; j++) {
			if (!(l3[j] & PTE_P))
				continue;
			u64 *l2 = phys_to_virt(l3[j] & PTE_ADDR);
			for (u32 k = 0; k < 512; k++) {
				if (!(l2[k] & PTE_P))
					continue;
				u64 *l1 = phys_to_virt(l2[k] & PTE_ADDR);
				for (u32 m = 0; m < 512; m++)
					if ((l1[m] & PTE_P) && (l1[m] & PTE_OWNED))
						frame_free(l1[m] & PTE_ADDR);
				frame_free(l2[k] & PTE_ADDR);
			}
			frame_free(l3[j] & PTE_ADDR);
		}
		frame_free(l4[i] & PTE_ADDR);
	}
	frame_free(pml4);
}
