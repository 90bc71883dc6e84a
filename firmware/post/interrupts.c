/*
 * Interrupt dispatch: IRQ0 (PIT tick), the LAPIC one-shot guard timer,
 * spurious vectors, and the fatal path for CPU exceptions and any other
 * unexpected vector.
 */
#include "fw.h"

#define VEC_IRQ0        0x20
#define VEC_IRQ7        0x27
#define VEC_IRQ15       0x2f
#define VEC_LAPIC_GUARD 0x40
#define VEC_SPURIOUS    0xff

volatile u32 timer_ticks;
volatile u32 guard_fired;

#include "exceptions.h"

static bool pic_in_service(u16 cmd_port, u8 bit)
{
	outb(cmd_port, 0x0b);                 /* OCW3: read ISR */
	return (inb(cmd_port) & bit) != 0;
}

NORETURN static void fatal_vector(struct int_frame *f)
{
	static volatile u32 nested;
	if (nested++)
		halt_forever();               /* fault inside the fault handler */
	console_force_com1();
	u64 cr2 = read_cr2();
	u64 d[4] = { f->vector, f->error, f->rip, cr2 };
	const char *what = f->vector < 32 ? exc_names[f->vector] : "unexpected interrupt";
	post_code(POST_UNEXPECTED_EXCEPTION);
	kprintf("\n[POST 0x%02X] FATAL: exception %lu (%s) error 0x%lx RIP 0x%lx CR2 0x%lx\n",
		POST_UNEXPECTED_EXCEPTION, f->vector, what, f->error, f->rip, cr2);
	kprintf("  RAX 0x%lx RBX 0x%lx RCX 0x%lx RDX 0x%lx\n", f->rax, f->rbx, f->rcx, f->rdx);
	kprintf("  RSI 0x%lx RDI 0x%lx RBP 0x%lx RSP 0x%lx\n", f->rsi, f->rdi, f->rbp, f->rsp);
	kprintf("  R8 0x%lx R9 0x%lx R10 0x%lx R11 0x%lx\n", f->r8, f->r9, f->r10, f->r11);
	kprintf("  R12 0x%lx R13 0x%lx R14 0x%lx R15 0x%lx\n", f->r12, f->r13, f->r14, f->r15);
	kprintf("  CS 0x%lx SS 0x%lx RFLAGS 0x%lx\n", f->cs, f->ss, f->rflags);
	post_fatal(POST_UNEXPECTED_EXCEPTION, d, "unexpected exception, halting");
}

void interrupt_dispatch(struct int_frame *f)
{
	switch (f->vector) {
	case VEC_IRQ0:
		timer_ticks++;
		outb(0x20, 0x20);             /* EOI master */
		return;
	case VEC_LAPIC_GUARD:
		guard_fired = 1;
		lapic_eoi();
		return;
	case VEC_SPURIOUS:
		return;                       /* LAPIC spurious: no EOI */
	case VEC_IRQ7:
		if (!pic_in_service(0x20, 0x80))
			return;               /* spurious master IRQ7 */
		break;
	case VEC_IRQ15:
		if (!pic_in_service(0xa0, 0x80)) {
			outb(0x20, 0x20);     /* spurious slave IRQ15: EOI master only */
			return;
		}
		break;
	default:
		break;
	}
	fatal_vector(f);
}
