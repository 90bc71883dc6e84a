/* 8259A PIC pair, local APIC, CMOS. No I/O delays: port 0x80 is the POST port. */
#include "fw.h"

#define PIC1_CMD  0x20
#define PIC1_DATA 0x21
#define PIC2_CMD  0xa0
#define PIC2_DATA 0xa1

#define LAPIC_EOI      0x0b0
#define LAPIC_SVR      0x0f0
#define LAPIC_LVT_TMR  0x320
#define LAPIC_LVT_LINT0 0x350
#define LAPIC_LVT_LINT1 0x360
#define LAPIC_TMR_INIT 0x380
#define LAPIC_TMR_DIV  0x3e0
#define LVT_MASKED     0x10000
#define MSR_APIC_BASE  0x1b

static u8 pic1_mask = 0xff, pic2_mask = 0xff;
static u64 apic_base;

void pic_init(void)
{
	outb(PIC1_CMD, 0x11);   /* ICW1: edge, cascade, ICW4 needed */
	outb(PIC2_CMD, 0x11);
	outb(PIC1_DATA, 0x20);  /* ICW2: master vectors 0x20-0x27 */
	outb(PIC2_DATA, 0x28);  /*       slave vectors 0x28-0x2f */
	outb(PIC1_DATA, 0x04);  /* ICW3: slave on IRQ2 */
	outb(PIC2_DATA, 0x02);  /*       slave identity 2 */
	outb(PIC1_DATA, 0x01);  /* ICW4: 8086 mode, normal EOI */
	outb(PIC2_DATA, 0x01);
	pic_mask_all();
}

void pic_mask_all(void)
{
	pic1_mask = 0xff;
	pic2_mask = 0xff;
	outb(PIC1_DATA, pic1_mask);
	outb(PIC2_DATA, pic2_mask);
}

void pic_unmask_irq(u8 irq)
{
	if (irq < 8) {
		pic1_mask &= (u8)~(1u << irq);
		outb(PIC1_DATA, pic1_mask);
	} else {
		pic2_mask &= (u8)~(1u << (irq - 8));
		pic1_mask &= (u8)~(1u << 2);
		outb(PIC2_DATA, pic2_mask);
		outb(PIC1_DATA, pic1_mask);
	}
}

bool lapic_present(void)
{
	u32 a, b, c, d;
	cpuid(1, 0, &a, &b, &c, &d);
	return (d & (1u << 9)) != 0;
}

u64 lapic_base(void)
{
	return apic_base;
}

void lapic_init(void)
{
	if (!lapic_present())
		return;
	u64 msr = rdmsr(MSR_APIC_BASE);
	msr |= 1u << 11;                       /* global enable (already set at reset) */
	wrmsr(MSR_APIC_BASE, msr);
	apic_base = msr & 0xfffff000ull;
	/* Emulators without an APIC MSR model (Unicorn) read 0 here; the
	 * architectural reset value is 0xFEE00000, which CPUID just promised. */
	if (!apic_base)
		apic_base = 0xfee00000ull;
	mmio_write32(apic_base + LAPIC_SVR, 0x100 | 0xff);       /* enable, spurious 0xff */
	mmio_write32(apic_base + LAPIC_LVT_LINT0, 0x700);        /* ExtINT: PIC -> CPU */
	mmio_write32(apic_base + LAPIC_LVT_LINT1, 0x400);        /* NMI */
	mmio_write32(apic_base + LAPIC_LVT_TMR, LVT_MASKED | 0x40);
	mmio_write32(apic_base + LAPIC_TMR_INIT, 0);
}

void lapic_guard_arm(u32 count)
{
	if (!apic_base)
		return;
	mmio_write32(apic_base + LAPIC_TMR_DIV, 0x0a);          /* divide by 128 */
	mmio_write32(apic_base + LAPIC_LVT_TMR, 0x40);          /* one-shot, vector 0x40 */
	mmio_write32(apic_base + LAPIC_TMR_INIT, count);
}

void lapic_guard_disarm(void)
{
	if (!apic_base)
		return;
	mmio_write32(apic_base + LAPIC_TMR_INIT, 0);
	mmio_write32(apic_base + LAPIC_LVT_TMR, LVT_MASKED | 0x40);
}

void lapic_eoi(void)
{
	if (apic_base)
		mmio_write32(apic_base + LAPIC_EOI, 0);
}

u8 cmos_read(u8 reg)
{
	outb(0x70, 0x80 | reg);                 /* bit 7: keep NMI disabled */
	return inb(0x71);
}
