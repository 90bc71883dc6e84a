/*
 * Time base: PIT channel 0, mode 2, divisor 1193 (~1000 Hz) on IRQ0, which
 * the firmware routed through the 8259A (vector 0x20) and the LAPIC's LINT0
 * (ExtINT). Only IRQ0 is unmasked. Ticks arrive only while a container runs
 * (the kernel keeps IF=0), which is exactly when the time limit matters.
 */
#include "os.h"

static volatile u64 ticks;

void timer_program_pit(void)
{
	outb(0x43, 0x34);                         /* ch0, lobyte/hibyte, mode 2, binary */
	outb(0x40, PIT_DIVISOR & 0xff);
	outb(0x40, PIT_DIVISOR >> 8);
}

void timer_init(void)
{
	timer_program_pit();
	outb(0xa1, 0xff);                         /* slave: all masked */
	outb(0x21, 0xfe);                         /* master: IRQ0 only */
}

u64 timer_ms(void)
{
	return ticks;
}

void timer_irq(bool from_user)
{
	ticks++;
	struct container *c = current_container();
	if (from_user && c && ticks >= c->deadline_ms) {
		u64 d[4] = { c->rec->time_limit_ms, ticks - c->start_ms, 0, 0 };
		report_finding(c, FM_SEV_ERROR, FSOURCE_OS, OSF_TIMEOUT, d,
			       "killed: time limit of %u ms exceeded", c->rec->time_limit_ms);
		container_kill(c, CSTATUS_TIMEOUT);
	}
}
