/*
 * Time base: PIT channel 0, mode 2, divisor 1193 (~1000 Hz) on IRQ0, which
 * the firmware routed through the 8259A (vector 0x20) and the LAPIC's LINT0
 * (ExtINT). Only IRQ0 is unmasked. Ticks arrive only while a container runs
 * (the kernel keeps IF=0), which is exactly when the time limit matters.
 *
 * When POST reported the PIT stuck, a hung container would never be killed,
 * so the LAPIC timer (periodic, vector 0x40) takes over. It cannot be
 * calibrated against a dead PIT; the APIC bus is assumed to run at 1 GHz,
 * as on QEMU and Firmament machines.
 */
#include "os.h"
#include "post_codes.h"      /* generated from firmware/post-codes.json */

#define LAPIC_PHYS       0xfee00000ul
#define LAPIC_EOI        0x0b0
#define LAPIC_SVR        0x0f0
#define LAPIC_LVT_TIMER  0x320
#define LAPIC_TMR_INIT   0x380
#define LAPIC_TMR_DIV    0x3e0
#define LVT_PERIODIC     (1u << 17)
#define APIC_BUS_HZ      1000000000u

static volatile u64 ticks;
static bool lapic_time_base;

static volatile u32 *lapic_reg(u32 off)
{
	return (volatile u32 *)phys_to_virt(LAPIC_PHYS + off);
}

bool timer_uses_lapic(void)
{
	return lapic_time_base;
}

void timer_lapic_eoi(void)
{
	*lapic_reg(LAPIC_EOI) = 0;
}

void timer_program_pit(void)
{
	outb(0x43, 0x34);                         /* ch0, lobyte/hibyte, mode 2, binary */
	outb(0x40, PIT_DIVISOR & 0xff);
	outb(0x40, PIT_DIVISOR >> 8);
}

void timer_init(void)
{
	outb(0xa1, 0xff);                         /* slave: all masked */
	if (boot_info->post_flags & POST_FLAG_PIT_STUCK) {
		lapic_time_base = true;
		outb(0x21, 0xff);                 /* nothing from the PIC */
		*lapic_reg(LAPIC_SVR) = 0x1ff;    /* software-enable, spurious 0xff */
		*lapic_reg(LAPIC_TMR_DIV) = 0xb;  /* divide by 1 */
		*lapic_reg(LAPIC_LVT_TIMER) = LVT_PERIODIC | VEC_LAPIC_TIMER;
		*lapic_reg(LAPIC_TMR_INIT) = APIC_BUS_HZ / TIMER_HZ;
		return;
	}
	timer_program_pit();
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
