/*
 * GDT (with the SYSCALL/SYSRET selector order), 64-bit TSS (RSP0 = trap
 * stack, IST1 for #DF, IST2 for NMI/#MC), IDT of 256 interrupt gates, the
 * SYSCALL MSRs, NX, CR0.WP, and the interrupt/exception dispatcher.
 */
#include "os.h"

#define MSR_EFER   0xC0000080
#define MSR_STAR   0xC0000081
#define MSR_LSTAR  0xC0000082
#define MSR_SFMASK 0xC0000084
#define EFER_SCE   (1ul << 0)
#define EFER_NXE   (1ul << 11)

#define VEC_UD     6
#define VEC_DF     8
#define VEC_GP     13
#define VEC_PF     14
#define VEC_IRQ0   0x20
#define VEC_IRQ7   0x27
#define VEC_IRQ15  0x2f

struct tss64 {
	u32 reserved0;
	u64 rsp[3];
	u64 reserved1;
	u64 ist[7];
	u64 reserved2;
	u16 reserved3;
	u16 iomap_base;
	/* I/O permission bitmap, one bit per port (set = fault at CPL 3), then the
	 * all-ones byte the CPU reads past the last one (SDM Vol. 1 19.5.2). */
	u8 iomap[0x10000 / 8];
	u8 iomap_end;
} PACKED;
STATIC_ASSERT(__builtin_offsetof(struct tss64, iomap) == 104, "tss");

struct idt_gate {
	u16 off0;
	u16 sel;
	u8 ist;
	u8 type;
	u16 off1;
	u32 off2;
	u32 reserved;
} PACKED;

static u64 gdt[8] __attribute__((aligned(16)));
static struct tss64 tss __attribute__((aligned(16)));
static struct idt_gate idt[256] __attribute__((aligned(16)));

#define STACK_SIZE 0x4000
/* first page: guard, left unmapped by paging_init */
u8 trap_stack_area[0x1000 + STACK_SIZE] __attribute__((aligned(4096), section(".bss.pagealigned.trap")));
#define trap_stack (trap_stack_area + 0x1000)
static u8 df_stack[0x2000] __attribute__((aligned(4096), section(".bss.pagealigned.df")));
static u8 nmi_stack[0x2000] __attribute__((aligned(4096), section(".bss.pagealigned.nmi")));
u64 trap_stack_top;
bool cpu_has_nx;

extern const char isr_stubs[];
extern const char syscall_entry[];

struct desc_ptr {
	u16 limit;
	u64 base;
} PACKED;

static void set_gate(u32 vec, u8 ist)
{
	u64 a = (u64)(uintptr_t)isr_stubs + 16 * vec;
	idt[vec].off0 = (u16)a;
	idt[vec].sel = SEL_KCODE;
	idt[vec].ist = ist;
	idt[vec].type = 0x8e;           /* present, DPL 0, 64-bit interrupt gate */
	idt[vec].off1 = (u16)(a >> 16);
	idt[vec].off2 = (u32)(a >> 32);
	idt[vec].reserved = 0;
}

/* A container's port grants, opened in the I/O bitmap for its ring-3 IN/OUT. */
void cpu_io_grant(u16 lo, u16 hi)
{
	for (u32 p = lo; p <= hi; p++)
		tss.iomap[p >> 3] &= (u8)~(1u << (p & 7));
}

void cpu_io_revoke_all(void)
{
	memset(tss.iomap, 0xff, sizeof(tss.iomap));
}

void cpu_init(void)
{
	gdt[0] = 0;
	gdt[1] = 0x00af9a000000fffful;  /* 0x08 kernel code, 64-bit */
	gdt[2] = 0x00cf92000000fffful;  /* 0x10 kernel data */
	gdt[3] = 0x00cffa000000fffful;  /* 0x18 user code 32 (unused; SYSRET order) */
	gdt[4] = 0x00cff2000000fffful;  /* 0x20 user data */
	gdt[5] = 0x00affa000000fffful;  /* 0x28 user code, 64-bit */
	trap_stack_top = (u64)(uintptr_t)(trap_stack + STACK_SIZE);
	memset(&tss, 0, sizeof(tss));
	tss.rsp[0] = trap_stack_top;
	tss.ist[0] = (u64)(uintptr_t)(df_stack + sizeof(df_stack));
	tss.ist[1] = (u64)(uintptr_t)(nmi_stack + sizeof(nmi_stack));
	tss.iomap_base = __builtin_offsetof(struct tss64, iomap);
	cpu_io_revoke_all();            /* every port faults at CPL 3 until a container's grants open some */
	tss.iomap_end = 0xff;
	u64 t = (u64)(uintptr_t)&tss;
	u64 lim = sizeof(tss) - 1;
	gdt[6] = (lim & 0xffff) | ((t & 0xffffff) << 16) | (0x89ul << 40) | (((lim >> 16) & 0xf) << 48) |
		 (((t >> 24) & 0xff) << 56);
	gdt[7] = t >> 32;

	struct desc_ptr g = { sizeof(gdt) - 1, (u64)(uintptr_t)gdt };
	__asm__ volatile(
		"lgdt %0\n\t"
		"pushq %1\n\t"
		"leaq 1f(%%rip), %%rax\n\t"
		"pushq %%rax\n\t"
		"lretq\n"
		"1:\n\t"
		"movl %2, %%eax\n\t"
		"movl %%eax, %%ds\n\t"
		"movl %%eax, %%es\n\t"
		"movl %%eax, %%ss\n\t"
		"xorl %%eax, %%eax\n\t"
		"movl %%eax, %%fs\n\t"
		"movl %%eax, %%gs\n\t"
		"ltr %w3\n\t"
		: : "m"(g), "i"(SEL_KCODE), "i"(SEL_KDATA), "r"(SEL_TSS) : "rax", "memory");

	for (u32 v = 0; v < 256; v++)
		set_gate(v, 0);
	set_gate(VEC_DF, 1);
	set_gate(2, 2);                 /* NMI */
	set_gate(18, 2);                /* #MC */
	struct desc_ptr i = { sizeof(idt) - 1, (u64)(uintptr_t)idt };
	__asm__ volatile("lidt %0" : : "m"(i) : "memory");

	u32 a, b, c, d;
	cpuid(0x80000000, 0, &a, &b, &c, &d);
	if (a >= 0x80000001) {
		cpuid(0x80000001, 0, &a, &b, &c, &d);
		cpu_has_nx = (d & (1u << 20)) != 0;
	}
	u64 efer = rdmsr(MSR_EFER) | EFER_SCE;
	if (cpu_has_nx)
		efer |= EFER_NXE;
	wrmsr(MSR_EFER, efer);
	/* SYSCALL: CS = 0x08, SS = 0x10. SYSRET: CS = 0x18 + 16 = 0x28|3, SS = 0x18 + 8 = 0x20|3. */
	wrmsr(MSR_STAR, ((u64)SEL_KCODE << 32) | ((u64)(SEL_UCODE32 | 3) << 48));
	wrmsr(MSR_LSTAR, (u64)(uintptr_t)syscall_entry);
	wrmsr(MSR_SFMASK, 0x44700);     /* clear TF, IF, DF, NT, AC on entry */

	u64 cr0;
	__asm__ volatile("mov %%cr0, %0" : "=r"(cr0));
	cr0 |= 1ull << 16;              /* WP: read-only pages are read-only for the kernel too */
	__asm__ volatile("mov %0, %%cr0" : : "r"(cr0) : "memory");
}

#include "exceptions.h"

static void pf_describe(u64 err, char *buf, u32 size)
{
	ksnprintf(buf, size, "%s, %s, %s%s", (err & 1) ? "protection" : "not present",
		  (err & 2) ? "write" : ((err & 16) ? "fetch" : "read"), (err & 4) ? "user" : "supervisor",
		  (err & 8) ? ", reserved bit" : "");
}

extern void handoff_no_hypervisor(void) NORETURN;

void interrupt_dispatch(struct int_frame *f)
{
	bool user = (f->cs & 3) == 3;
	if (f->vector == VEC_IRQ0) {
		outb(0x20, 0x20);           /* EOI (ExtINT through LINT0: the PIC only) */
		timer_irq(user);
		return;
	}
	if (f->vector == VEC_LAPIC_TIMER) {
		timer_lapic_eoi();
		timer_irq(user);
		return;
	}
	if (f->vector == 0xff)
		return;                     /* LAPIC spurious: no EOI */
	if (f->vector == VEC_IRQ7 || f->vector == VEC_IRQ15) {
		/* spurious or stray: acknowledge real IRQ15s on both PICs */
		if (f->vector == VEC_IRQ15)
			outb(0x20, 0x20);
		return;
	}
	if (!user) {
		if (f->vector == VEC_UD && f->rip == (u64)(uintptr_t)handoff_vmcall_insn)
			handoff_no_hypervisor();
		u64 cr2 = read_cr2();
		kprintf("os: PANIC: exception %lu (%s) in the kernel, error 0x%lx, RIP 0x%lx, CR2 0x%lx, RSP 0x%lx\n",
			f->vector, f->vector < 32 ? exc_names[f->vector] : "interrupt", f->error, f->rip, cr2, f->rsp);
		os_exit(EXIT_PANIC);
	}
	struct container *c = current_container();
	if (!c)
		panic("user-mode interrupt %lu without a container", f->vector);
	if (f->vector == VEC_PF) {
		u64 cr2 = read_cr2();
		char what[64];
		pf_describe(f->error, what, sizeof(what));
		u64 d[4] = { cr2, f->error, f->rip, 0 };
		report_finding(c, FM_SEV_ERROR, FSOURCE_OS, OSF_PAGE_FAULT, d,
			       "killed: page fault at 0x%lx (%s), error 0x%lx, RIP 0x%lx", cr2, what, f->error, f->rip);
	} else {
		u64 d[4] = { f->vector, f->error, f->rip, 0 };
		report_finding(c, FM_SEV_ERROR, FSOURCE_OS, OSF_EXCEPTION, d,
			       "killed: exception %lu (%s), error 0x%lx, RIP 0x%lx", f->vector,
			       f->vector < 32 ? exc_names[f->vector] : "unexpected interrupt", f->error, f->rip);
	}
	container_kill(c, CSTATUS_FAIL);
}
