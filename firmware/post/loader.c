/*
 * Next stage loader: ELF64 from fw_cfg file opt/firmament/next-stage.
 * Headers are validated before anything is written to RAM; segments are
 * then streamed straight from fw_cfg to p_paddr (DMA when available).
 */
#include "fw.h"
#include "elf64.h"

#define NEXT_STAGE_NAME "opt/firmament/next-stage"
#define MAX_PHDRS 16

/* Reason codes reported as detail[0] of NEXT_STAGE_INVALID (docs/firmware.md). */
enum {
	NS_TOO_SMALL = 1,
	NS_BAD_MAGIC = 2,
	NS_NOT_ELF64 = 3,
	NS_NOT_LSB = 4,
	NS_NOT_X86_64 = 5,
	NS_NOT_EXEC = 6,
	NS_BAD_PHDRS = 7,
	NS_NO_LOAD = 8,
	NS_SEG_OUTSIDE_FILE = 9,
	NS_SEG_FILESZ = 10,
	NS_SEG_NOT_USABLE = 11,
	NS_SEG_OVERLAP = 12,
	NS_BAD_ENTRY = 13,
	NS_TRANSFER = 14,
};

static struct elf64_phdr phdrs[MAX_PHDRS];

NORETURN static void invalid(u64 reason, u64 value, const char *what)
{
	u64 d[4] = { reason, value, 0, 0 };
	post_fatal(POST_NEXT_STAGE_INVALID, d, "next stage invalid: %s (reason %lu, value 0x%lx), halting",
		   what, reason, value);
}

void load_next_stage(const struct memmap *m, struct next_stage *ns)
{
	u16 key;
	u32 size;
	if (!fwcfg_present() || !fwcfg_find_file(NEXT_STAGE_NAME, &key, &size))
		post_fatal(POST_NEXT_STAGE_MISSING, NULL,
			   "next stage missing: fw_cfg file " NEXT_STAGE_NAME " not found, halting");

	post_progress(POST_NEXT_STAGE_LOAD, "next stage: fw_cfg file " NEXT_STAGE_NAME ", %u bytes, via %s",
		      size, fwcfg_has_dma() ? "DMA" : "data port");

	struct elf64_ehdr eh;
	if (size < sizeof(eh))
		invalid(NS_TOO_SMALL, size, "file smaller than an ELF64 header");
	if (!fwcfg_read_at(key, 0, &eh, sizeof(eh)))
		invalid(NS_TRANSFER, 0, "fw_cfg transfer error");
	if (memcmp(eh.e_ident, "\177ELF", 4) != 0)
		invalid(NS_BAD_MAGIC, (u64)eh.e_ident[0] | (u64)eh.e_ident[1] << 8 |
			(u64)eh.e_ident[2] << 16 | (u64)eh.e_ident[3] << 24, "bad ELF magic");
	if (eh.e_ident[4] != ELFCLASS64)
		invalid(NS_NOT_ELF64, eh.e_ident[4], "not ELFCLASS64");
	if (eh.e_ident[5] != ELFDATA2LSB)
		invalid(NS_NOT_LSB, eh.e_ident[5], "not little-endian");
	if (eh.e_machine != EM_X86_64)
		invalid(NS_NOT_X86_64, eh.e_machine, "e_machine is not x86-64");
	if (eh.e_type != ET_EXEC)
		invalid(NS_NOT_EXEC, eh.e_type, "e_type is not ET_EXEC");
	if (eh.e_phentsize != sizeof(struct elf64_phdr) || eh.e_phnum == 0 || eh.e_phnum > MAX_PHDRS ||
	    eh.e_phoff >= size || eh.e_phoff + (u64)eh.e_phnum * sizeof(struct elf64_phdr) > size)
		invalid(NS_BAD_PHDRS, eh.e_phnum, "bad program header table");
	if (!fwcfg_read_at(key, (u32)eh.e_phoff, phdrs, eh.e_phnum * (u32)sizeof(struct elf64_phdr)))
		invalid(NS_TRANSFER, eh.e_phoff, "fw_cfg transfer error");

	u32 nload = 0;
	bool entry_ok = false;
	u64 entry_phys = 0, lo = ~0ull, hi = 0;
	for (u32 i = 0; i < eh.e_phnum; i++) {
		const struct elf64_phdr *p = &phdrs[i];
		if (p->p_type != PT_LOAD || p->p_memsz == 0)
			continue;
		nload++;
		if (p->p_filesz > p->p_memsz)
			invalid(NS_SEG_FILESZ, p->p_paddr, "segment p_filesz > p_memsz");
		if (p->p_offset > size || p->p_filesz > size - p->p_offset)
			invalid(NS_SEG_OUTSIDE_FILE, p->p_offset, "segment extends past end of file");
		u64 end = p->p_paddr + p->p_memsz;
		if (end < p->p_paddr || end > 0x100000000ull ||
		    !memmap_range_is(m, p->p_paddr, p->p_memsz, E820_USABLE))
			invalid(NS_SEG_NOT_USABLE, p->p_paddr,
				"segment not inside usable RAM (firmware, reserved or bad memory)");
		for (u32 j = 0; j < i; j++) {
			const struct elf64_phdr *q = &phdrs[j];
			if (q->p_type != PT_LOAD || q->p_memsz == 0)
				continue;
			if (p->p_paddr < q->p_paddr + q->p_memsz && q->p_paddr < end)
				invalid(NS_SEG_OVERLAP, p->p_paddr, "segments overlap");
		}
		if ((p->p_flags & PF_X) && eh.e_entry >= p->p_vaddr && eh.e_entry - p->p_vaddr < p->p_memsz) {
			entry_ok = true;
			entry_phys = p->p_paddr + (eh.e_entry - p->p_vaddr);
		}
		if (p->p_paddr < lo)
			lo = p->p_paddr;
		if (end > hi)
			hi = end;
	}
	if (nload == 0)
		invalid(NS_NO_LOAD, 0, "no PT_LOAD segment");
	if (!entry_ok)
		invalid(NS_BAD_ENTRY, eh.e_entry, "entry point not inside an executable PT_LOAD segment");

	for (u32 i = 0; i < eh.e_phnum; i++) {
		const struct elf64_phdr *p = &phdrs[i];
		if (p->p_type != PT_LOAD || p->p_memsz == 0)
			continue;
		kprintf("  load: [mem 0x%016lx-0x%016lx] %c%c%c file 0x%lx bytes at offset 0x%lx, zero 0x%lx bytes\n",
			p->p_paddr, p->p_paddr + p->p_memsz - 1,
			(p->p_flags & 4) ? 'r' : '-', (p->p_flags & 2) ? 'w' : '-', (p->p_flags & 1) ? 'x' : '-',
			p->p_filesz, p->p_offset, p->p_memsz - p->p_filesz);
		if (p->p_filesz &&
		    !fwcfg_read_at(key, (u32)p->p_offset, (void *)(uintptr_t)p->p_paddr, (u32)p->p_filesz))
			invalid(NS_TRANSFER, p->p_paddr, "fw_cfg transfer error");
		memset((void *)(uintptr_t)(p->p_paddr + p->p_filesz), 0, p->p_memsz - p->p_filesz);
	}

	ns->entry = entry_phys;
	ns->start = lo;
	ns->end = hi;
	ns->segments = nload;
	post_progress(POST_NEXT_STAGE_LOADED, "next stage: ELF64 x86-64, %u PT_LOAD segment%s loaded, entry 0x%lx",
		      nload, nload == 1 ? "" : "s", entry_phys);
}
