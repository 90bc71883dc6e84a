/*
 * Container runtime: ELF loading into a private address space, ring-3
 * execution with a time limit, the system calls, and fault containment.
 *
 * Address space of a container (user half only; the OS half is shared but
 * supervisor-only): its PT_LOAD segments (U, W only if PF_W, NX unless
 * PF_X), a 16 KiB stack below FM_USER_STACK_TOP, a heap grown by SYS_BRK,
 * and with the ram-test grant the lent RAM window at FM_USER_RAMTEST.
 * Frames the container owns carry PTE_OWNED and are freed with the address
 * space; lent RAM goes back to the allocator unless it was fenced.
 */
#include "os.h"
#include "post_codes.h"      /* generated from firmware/post-codes.json by build-os */

#define KIND_EXIT   0ull
#define KIND_KILLED 1ull
#define MAX_LOG_LINES 64
#define FINDINGS_PER_CONTAINER 10

static struct container *cur;

struct container *current_container(void)
{
	return cur;
}

u32 report_finding(struct container *c, u8 severity, u8 source, u32 code, const u64 detail[4], const char *fmt, ...)
{
	static const char *const sev[] = { "info", "warning", "error", "critical" };
	u32 limit = source == FSOURCE_OS && code == OSF_FIX_APPLIED ? FINDINGS_PER_CONTAINER - 1 : FINDINGS_PER_CONTAINER;
	if (finding_count == MAX_FINDINGS || c->rec->finding_count >= limit) {
		findings_dropped++;
		return ~0u;
	}
	struct handoff_finding *f = &findings_tab[finding_count];
	memset(f, 0, sizeof(*f));
	f->container = c->index;
	f->severity = severity;
	f->source = source;
	f->code = code;
	if (detail)
		for (u32 i = 0; i < 4; i++)
			f->detail[i] = detail[i];
	va_list ap;
	va_start(ap, fmt);
	kvsnprintf(f->text, sizeof(f->text), fmt, ap);
	va_end(ap);
	if (!c->rec->finding_count)
		c->rec->first_finding = finding_count;
	c->rec->finding_count++;
	kprintf("  %s: finding %s %s 0x%04x: %s\n", c->rec->name, sev[severity & 3],
		source == FSOURCE_OS ? "os" : "container", code, f->text);
	return finding_count++;
}

NORETURN void container_kill(struct container *c, u32 status_hint)
{
	user_return(&c->ctx, KIND_KILLED << 32 | status_hint);
}

/* ---- user memory access (checked through the container's page tables) ---- */

static bool user_copy(struct container *c, void *kbuf, u64 uva, u64 len, bool to_user)
{
	u8 *k = kbuf;
	while (len) {
		u64 *pte = as_lookup(c->pml4, uva);
		if (!pte || !(*pte & PTE_U) || (to_user && !(*pte & PTE_W)))
			return false;
		u64 off = uva & (PAGE_SIZE - 1);
		u64 n = PAGE_SIZE - off;
		if (n > len)
			n = len;
		u8 *p = (u8 *)phys_to_virt((*pte & PTE_ADDR) + off);
		if (to_user)
			memcpy(p, k, n);
		else
			memcpy(k, p, n);
		k += n;
		uva += n;
		len -= n;
	}
	return true;
}

/* Copy a NUL-terminated string (at most max-1 characters, truncating). */
static bool user_string(struct container *c, char *out, u64 uva, u32 max)
{
	u32 i = 0;
	for (; i + 1 < max; i++) {
		char ch;
		if (!user_copy(c, &ch, uva + i, 1, false))
			return false;
		if (!ch)
			break;
		out[i] = ch;
	}
	out[i] = 0;
	return true;
}

static void sanitize(char *s)
{
	for (; *s; s++)
		if ((u8)*s < 0x20 || (u8)*s > 0x7e)
			*s = '?';
}

/* ---- grants ---- */

static bool port_granted(const struct container *c, u64 port, u64 width)
{
	for (u64 p = port; p < port + width; p++) {
		bool ok = false;
		for (u32 i = 0; i < c->nports && !ok; i++)
			ok = p >= c->port_lo[i] && p <= c->port_hi[i];
		if (!ok)
			return false;
	}
	return true;
}

/* ---- lent RAM for the memory test ---- */

static void lend_ram(struct container *c)
{
	u64 free = frames_free_count();
	/* leave the lowest free frames for the window's page tables (PTs, PDs, slack) */
	u64 reserve = (free + 511) / 512 + (free + 262143) / 262144 + 8;
	if (free <= reserve + 16)
		return;
	u64 skipped = 0;
	u64 top = mm_ram_top();
	for (u64 p = PAGE_SIZE; p < top; p += PAGE_SIZE) {
		if (!frame_is_free(p))
			continue;
		if (skipped < reserve) {
			skipped++;
			continue;
		}
		struct fm_ram_range *r = c->nranges ? &c->ranges[c->nranges - 1] : NULL;
		if (!(r && r->phys + r->length == p)) {
			if (c->nranges == ARRAY_SIZE(c->ranges))
				break;
			r = &c->ranges[c->nranges++];
			r->phys = p;
			r->length = 0;
		}
		frame_claim(p);
		r->length += PAGE_SIZE;
	}
	/* map each range at the next free spot of the window, one unmapped page apart;
	 * should the page-table reserve run out, the unmapped rest goes back */
	u64 va = FM_USER_RAMTEST;
	for (u32 i = 0; i < c->nranges; i++) {
		struct fm_ram_range *r = &c->ranges[i];
		r->virt = va;
		for (u64 off = 0; off < r->length; off += PAGE_SIZE) {
			if (as_map(c->pml4, va + off, r->phys + off, PTE_U | PTE_W | PTE_NX))
				continue;
			for (u64 o = off; o < r->length; o += PAGE_SIZE)
				frame_free(r->phys + o);
			r->length = off;
			for (u32 j = i + 1; j < c->nranges; j++)
				for (u64 o = 0; o < c->ranges[j].length; o += PAGE_SIZE)
					frame_free(c->ranges[j].phys + o);
			c->nranges = off ? i + 1 : i;
			return;
		}
		va += r->length + PAGE_SIZE;
	}
}

static void unlend_ram(struct container *c)
{
	for (u32 i = 0; i < c->nranges; i++)
		for (u64 off = 0; off < c->ranges[i].length; off += PAGE_SIZE)
			frame_free(c->ranges[i].phys + off);     /* fenced frames stay taken */
}

static bool lent_range(const struct container *c, u64 base, u64 len)
{
	for (u64 p = base; p < base + len; p += PAGE_SIZE) {
		bool ok = false;
		for (u32 i = 0; i < c->nranges && !ok; i++)
			ok = p >= c->ranges[i].phys && p < c->ranges[i].phys + c->ranges[i].length;
		if (!ok)
			return false;
	}
	return true;
}

/* ---- fixes ---- */

static u8 cmos_rd(u8 reg)
{
	outb(0x70, 0x80 | reg);
	return inb(0x71);
}

static void cmos_wr(u8 reg, u8 v)
{
	outb(0x70, 0x80 | reg);
	outb(0x71, v);
}

static i64 fix(struct container *c, u64 kind, u64 uargs, u64 nargs)
{
	u64 a[2] = { 0, 0 };
	if (nargs > 2)
		return -FM_EINVAL;
	if (nargs && !user_copy(c, a, uargs, nargs * 8, false))
		return -FM_EFAULT;
	if (kind == FIX_FENCE_RAM) {
		u64 base = a[0], len = a[1];
		i64 err = 0;
		if (!(c->grants & GRANT_RAM_TEST))
			err = -FM_EPERM;
		else if (nargs != 2 || !len || (base | len) & (PAGE_SIZE - 1) || base + len < base)
			err = -FM_EINVAL;
		else if (!lent_range(c, base, len))
			err = -FM_EPERM;
		if (err) {
			u64 d[4] = { kind, base, len, (u64)-err };
			report_finding(c, FM_SEV_WARNING, FSOURCE_OS, OSF_FIX_DENIED, d,
				       "fix denied: fence [mem 0x%lx-0x%lx] (error %ld)", base, base + len - 1, -err);
			return err;
		}
		for (u64 p = base; p < base + len; p += PAGE_SIZE)
			frame_fence(p);
		c->rec->fixes_applied++;
		u64 d[4] = { kind, base, len, 0 };
		report_finding(c, FM_SEV_INFO, FSOURCE_OS, OSF_FIX_APPLIED, d,
			       "fix applied: [mem 0x%lx-0x%lx] fenced, handed off as type 5", base, base + len - 1);
		return 0;
	}
	if (kind == FIX_CMOS_CHECKSUM) {
		if (!port_granted(c, 0x70, 2)) {
			u64 d[4] = { kind, 0, 0, FM_EPERM };
			report_finding(c, FM_SEV_WARNING, FSOURCE_OS, OSF_FIX_DENIED, d,
				       "fix denied: CMOS checksum repair needs the port:0x70-0x71 grant");
			return -FM_EPERM;
		}
		u16 sum = 0;
		for (u8 r = 0x10; r <= 0x2d; r++)
			sum = (u16)(sum + cmos_rd(r));
		u16 old = (u16)(cmos_rd(0x2e) << 8 | cmos_rd(0x2f));
		cmos_wr(0x2e, (u8)(sum >> 8));
		cmos_wr(0x2f, (u8)sum);
		u16 now = (u16)(cmos_rd(0x2e) << 8 | cmos_rd(0x2f));
		if (now != sum) {
			u64 d[4] = { kind, old, sum, now };
			report_finding(c, FM_SEV_ERROR, FSOURCE_OS, OSF_FIX_DENIED, d,
				       "fix failed: CMOS checksum 0x%04x written, 0x%04x read back", sum, now);
			return -FM_EIO;
		}
		c->rec->fixes_applied++;
		if (boot_info->post_flags & POST_FLAG_CMOS_CHECKSUM_BAD)
			post_flags_resolved |= POST_FLAG_CMOS_CHECKSUM_BAD;
		u64 d[4] = { kind, old, sum, 0 };
		report_finding(c, FM_SEV_INFO, FSOURCE_OS, OSF_FIX_APPLIED, d,
			       "fix applied: CMOS checksum 0x%04x -> 0x%04x (0x2E/0x2F)", old, sum);
		return sum;
	}
	return -FM_EINVAL;
}

/* ---- system calls ---- */

static void sys_log(struct container *c, u64 uva, u64 len)
{
	char buf[FM_LOG_MAX + 1];
	if (len > FM_LOG_MAX)
		len = FM_LOG_MAX;
	if (!user_copy(c, buf, uva, len, false))
		return;
	buf[len] = 0;
	u32 st = 0;
	for (u32 i = 0; i <= len; i++) {
		if (i < len && buf[i] != '\n')
			continue;
		bool last = i == len;
		buf[i] = 0;
		if (!(last && i == st)) {          /* skip the empty tail after a final '\n' */
			if (c->log_lines < MAX_LOG_LINES) {
				sanitize(buf + st);
				kprintf("  %s: %s\n", c->rec->name, buf + st);
			} else if (c->log_lines == MAX_LOG_LINES) {
				kprintf("  %s: (log limit of %u lines reached, further output dropped)\n", c->rec->name,
					MAX_LOG_LINES);
			}
			c->log_lines++;
		}
		st = i + 1;
	}
}

static i64 sys_brk(struct container *c, i64 incr)
{
	u64 old = c->heap_end;
	if (incr < 0)
		return -FM_EINVAL;
	u64 want = old + (u64)incr;
	if (want > FM_USER_HEAP_MAX)
		return -FM_ENOMEM;
	u64 mapped = (old + PAGE_SIZE - 1) & PAGE_MASK;
	u64 need = (want + PAGE_SIZE - 1) & PAGE_MASK;
	if (((need - mapped) >> 12) + c->pages_used > c->rec->memory_limit >> 12)
		return -FM_ENOMEM;
	for (u64 va = mapped; va < need; va += PAGE_SIZE) {
		u64 f = frame_alloc();
		if (!f || !as_map(c->pml4, va, f, PTE_U | PTE_W | PTE_NX | PTE_OWNED)) {
			if (f)
				frame_free(f);
			return -FM_ENOMEM;
		}
		c->pages_used++;
	}
	if (c->pages_used > c->pages_peak)
		c->pages_peak = c->pages_used;
	c->heap_end = want;
	return (i64)old;
}

void syscall_dispatch(struct int_frame *f)
{
	struct container *c = cur;
	if (!c)
		panic("syscall without a container");
	u64 a0 = f->rdi, a1 = f->rsi, a2 = f->rdx, a3 = f->r10;
	i64 ret;
	switch (f->rax) {
	case SYS_EXIT:
		user_return(&c->ctx, KIND_EXIT << 32 | (u32)a0);
	case SYS_LOG:
		sys_log(c, a0, a1);
		ret = (i64)(a1 > FM_LOG_MAX ? FM_LOG_MAX : a1);
		break;
	case SYS_PORT_IN:
	case SYS_PORT_OUT: {
		bool out = f->rax == SYS_PORT_OUT;
		if (a1 != 1 && a1 != 2 && a1 != 4) {
			ret = -FM_EINVAL;
			break;
		}
		if (a0 > 0xffff || !port_granted(c, a0, a1)) {
			u64 d[4] = { a0, a1, out, f->rip };
			report_finding(c, FM_SEV_ERROR, FSOURCE_OS, OSF_PORT_DENIED, d,
				       "killed: port %s 0x%lx (width %lu) is not granted", out ? "write" : "read", a0, a1);
			container_kill(c, CSTATUS_FAIL);
		}
		u16 port = (u16)a0;
		if (out) {
			if (a1 == 1)
				outb(port, (u8)a2);
			else if (a1 == 2)
				outw(port, (u16)a2);
			else
				outl(port, (u32)a2);
			ret = 0;
		} else {
			ret = a1 == 1 ? inb(port) : a1 == 2 ? inw(port) : inl(port);
		}
		break;
	}
	case SYS_REPORT_FINDING: {
		char text[FM_FINDING_TEXT_MAX + 1];
		u64 d[4] = { 0, 0, 0, 0 };
		if (a0 > FM_SEV_CRITICAL) {
			ret = -FM_EINVAL;
			break;
		}
		if (!user_string(c, text, a2, sizeof(text)) || (a3 && !user_copy(c, d, a3, sizeof(d), false))) {
			ret = -FM_EFAULT;
			break;
		}
		if (c->own_findings >= FM_CONTAINER_FINDINGS) {
			findings_dropped++;
			ret = -FM_ELIMIT;
			break;
		}
		sanitize(text);
		u32 idx = report_finding(c, (u8)a0, FSOURCE_CONTAINER, (u32)a1, d, "%s", text);
		if (idx == ~0u) {
			ret = -FM_ELIMIT;
			break;
		}
		c->own_findings++;
		ret = idx - c->rec->first_finding;
		break;
	}
	case SYS_REQUEST_FIX:
		ret = fix(c, a0, a1, a2);
		break;
	case SYS_RAM_RANGES: {
		if (!(c->grants & GRANT_RAM_TEST)) {
			ret = -FM_EPERM;
			break;
		}
		if (!c->nranges)
			lend_ram(c);
		u64 n = c->nranges < a1 ? c->nranges : a1;
		if (n && !user_copy(c, c->ranges, a0, n * sizeof(struct fm_ram_range), true)) {
			ret = -FM_EFAULT;
			break;
		}
		ret = c->nranges;
		break;
	}
	case SYS_TICKS:
		ret = (i64)timer_ms();
		break;
	case SYS_BRK:
		ret = sys_brk(c, (i64)a0);
		break;
	default: {
		u64 d[4] = { f->rax, f->rip, 0, 0 };
		report_finding(c, FM_SEV_ERROR, FSOURCE_OS, OSF_BAD_SYSCALL, d, "killed: unknown system call %lu", f->rax);
		container_kill(c, CSTATUS_FAIL);
	}
	}
	f->rax = (u64)ret;
	if (f->rip >= 0x0000800000000000ul) {
		u64 d[4] = { f->rax, f->rip, 0, 0 };
		report_finding(c, FM_SEV_ERROR, FSOURCE_OS, OSF_BAD_SYSCALL, d, "killed: return address 0x%lx not canonical",
			       f->rip);
		container_kill(c, CSTATUS_FAIL);
	}
}

/* ---- ELF loading ---- */

static bool load_fail(struct container *c, u64 reason, u64 value, const char *why)
{
	u64 d[4] = { reason, value, 0, 0 };
	report_finding(c, FM_SEV_ERROR, FSOURCE_OS, OSF_IMAGE_INVALID, d, "rejected: container.elf: %s (0x%lx)", why, value);
	return false;
}

static bool load_elf(struct container *c, const u8 *img, u64 size)
{
	const struct elf64_ehdr *eh = (const void *)img;
	if (size < sizeof(*eh) || memcmp(eh->e_ident, "\x7f" "ELF", 4))
		return load_fail(c, 1, size, "not an ELF file");
	if (eh->e_ident[4] != ELFCLASS64 || eh->e_ident[5] != ELFDATA2LSB || eh->e_machine != EM_X86_64)
		return load_fail(c, 2, eh->e_machine, "not ELF64 little-endian x86-64");
	if (eh->e_type != ET_EXEC)
		return load_fail(c, 3, eh->e_type, "not a static executable (ET_EXEC)");
	if (eh->e_phentsize != sizeof(struct elf64_phdr) || !eh->e_phnum || eh->e_phnum > 16 ||
	    eh->e_phoff > size || eh->e_phoff + (u64)eh->e_phnum * sizeof(struct elf64_phdr) > size)
		return load_fail(c, 4, eh->e_phnum, "bad program header table");
	const struct elf64_phdr *ph = (const void *)(img + eh->e_phoff);
	u64 pages = FM_USER_STACK_SIZE >> 12;
	bool entry_ok = false;
	u32 loads = 0;
	for (u32 i = 0; i < eh->e_phnum; i++) {
		const struct elf64_phdr *p = &ph[i];
		if (p->p_type != PT_LOAD || !p->p_memsz)
			continue;
		loads++;
		if (p->p_filesz > p->p_memsz || p->p_offset > size || p->p_filesz > size - p->p_offset)
			return load_fail(c, 5, p->p_vaddr, "segment outside the file");
		if (p->p_vaddr < FM_USER_IMAGE_MIN || p->p_vaddr >= FM_USER_IMAGE_MAX ||
		    p->p_memsz > FM_USER_IMAGE_MAX - p->p_vaddr)
			return load_fail(c, 6, p->p_vaddr, "segment outside the user image area");
		pages += ((p->p_vaddr + p->p_memsz + PAGE_SIZE - 1) >> 12) - (p->p_vaddr >> 12);
		if ((p->p_flags & PF_X) && eh->e_entry >= p->p_vaddr && eh->e_entry < p->p_vaddr + p->p_memsz)
			entry_ok = true;
	}
	if (!loads)
		return load_fail(c, 7, 0, "no PT_LOAD segment");
	if (!entry_ok)
		return load_fail(c, 8, eh->e_entry, "entry point not in an executable segment");
	if (pages > c->rec->memory_limit >> 12) {
		u64 d[4] = { pages << 12, c->rec->memory_limit, 0, 0 };
		report_finding(c, FM_SEV_ERROR, FSOURCE_OS, OSF_MEMORY_LIMIT, d,
			       "rejected: image and stack need %lu KiB, org.firmament.memory allows %lu KiB", pages << 2,
			       c->rec->memory_limit >> 10);
		return false;
	}
	for (u32 i = 0; i < eh->e_phnum; i++) {
		const struct elf64_phdr *p = &ph[i];
		if (p->p_type != PT_LOAD || !p->p_memsz)
			continue;
		u64 flags = PTE_U | PTE_OWNED | ((p->p_flags & 2) ? PTE_W : 0) | ((p->p_flags & PF_X) ? 0 : PTE_NX);
		for (u64 va = p->p_vaddr & PAGE_MASK; va < p->p_vaddr + p->p_memsz; va += PAGE_SIZE) {
			u64 f = frame_alloc();
			if (!f)
				return load_fail(c, 9, va, "out of memory");
			if (!as_map(c->pml4, va, f, flags)) {
				frame_free(f);
				return load_fail(c, 10, va, "segments overlap");
			}
			c->pages_used++;
			/* copy the file bytes that fall into this page */
			u64 lo = va > p->p_vaddr ? va : p->p_vaddr;
			u64 hi = va + PAGE_SIZE;
			if (hi > p->p_vaddr + p->p_filesz)
				hi = p->p_vaddr + p->p_filesz;
			if (hi > lo)
				memcpy((u8 *)phys_to_virt(f) + (lo - va), img + p->p_offset + (lo - p->p_vaddr), hi - lo);
		}
	}
	for (u64 va = FM_USER_STACK_TOP - FM_USER_STACK_SIZE; va < FM_USER_STACK_TOP; va += PAGE_SIZE) {
		u64 f = frame_alloc();
		if (!f || !as_map(c->pml4, va, f, PTE_U | PTE_W | PTE_NX | PTE_OWNED)) {
			if (f)
				frame_free(f);
			return load_fail(c, 9, va, "out of memory");
		}
		c->pages_used++;
	}
	c->pages_peak = c->pages_used;
	c->entry = eh->e_entry;
	c->heap_end = FM_USER_HEAP_BASE;
	return true;
}

void runtime_run(struct container *c, const u8 *elf, u64 size)
{
	struct handoff_container *r = c->rec;
	c->pml4 = as_create();
	if (!c->pml4)
		panic("out of memory for a page table");
	if (!load_elf(c, elf, size)) {
		as_destroy(c->pml4);
		r->status = CSTATUS_REJECTED;
		r->exit_code = -1;
		return;
	}
	cur = c;
	timer_program_pit();
	c->start_ms = timer_ms();
	c->deadline_ms = c->start_ms + r->time_limit_ms;
	/* Exactly the granted ports answer the container's own IN/OUT; every other one faults (#GP). */
	for (u32 i = 0; i < c->nports; i++)
		cpu_io_grant(c->port_lo[i], c->port_hi[i]);
	u64 res = user_enter(&c->ctx, c->entry, FM_USER_STACK_TOP, c->pml4);
	cpu_io_revoke_all();
	write_cr3(kernel_cr3());
	cur = NULL;
	r->runtime_ms = (u32)(timer_ms() - c->start_ms);
	r->memory_used = c->pages_peak << 12;
	unlend_ram(c);
	as_destroy(c->pml4);
	c->pml4 = 0;

	u32 kind = (u32)(res >> 32), value = (u32)res;
	if (kind == KIND_KILLED) {
		r->status = value;
		r->exit_code = -1;
		return;
	}
	r->exit_code = (i32)value;
	if (value == FM_EXIT_PASS) {
		r->status = CSTATUS_PASS;
	} else if (value == FM_EXIT_FIXED && r->fixes_applied) {
		r->status = CSTATUS_FIXED;
	} else if (value == FM_EXIT_FAIL) {
		r->status = CSTATUS_FAIL;
	} else {
		u64 d[4] = { value, r->fixes_applied, 0, 0 };
		report_finding(c, FM_SEV_ERROR, FSOURCE_OS, OSF_EXIT_STATUS, d,
			       value == FM_EXIT_FIXED ? "exit status FIXED but no fix was applied"
						      : "unknown exit status %u", value);
		r->status = CSTATUS_FAIL;
	}
}
