/* 8259A PIC and 8254 PIT channel 0. */
#include "x86_64.h"

#define PIC1_CMD 0x20
#define PIC1_DATA 0x21
#define PIC2_CMD 0xA0
#define PIC2_DATA 0xA1

volatile uint64_t pit_ticks;
static void (*pit_hook)(void);
static uint16_t pic_masks = 0xFFFF;

static void pic_write_masks(void)
{
    outb(PIC1_DATA, (uint8_t)pic_masks);
    outb(PIC2_DATA, (uint8_t)(pic_masks >> 8));
}

void pic_mask_all(void)
{
    pic_masks = 0xFFFF;
    pic_write_masks();
}

void pic_init(void)
{
    outb(PIC1_CMD, 0x11);  /* ICW1: edge, cascade, ICW4 follows */
    io_wait();
    outb(PIC2_CMD, 0x11);
    io_wait();
    outb(PIC1_DATA, PIC_VECTOR_BASE);      /* ICW2: vector base */
    io_wait();
    outb(PIC2_DATA, PIC_VECTOR_BASE + 8);
    io_wait();
    outb(PIC1_DATA, 0x04); /* ICW3: slave on IRQ2 */
    io_wait();
    outb(PIC2_DATA, 0x02);
    io_wait();
    outb(PIC1_DATA, 0x01); /* ICW4: 8086 mode, normal EOI */
    io_wait();
    outb(PIC2_DATA, 0x01);
    io_wait();
    pic_masks = 0xFFFF & ~(1u << 2); /* cascade line open, everything else masked */
    pic_write_masks();
}

void pic_unmask(unsigned irq)
{
    pic_masks &= (uint16_t)~(1u << irq);
    pic_write_masks();
}

void pic_mask(unsigned irq)
{
    pic_masks |= (uint16_t)(1u << irq);
    pic_write_masks();
}

void pic_eoi(unsigned irq)
{
    if (irq >= 8)
        outb(PIC2_CMD, 0x20);
    outb(PIC1_CMD, 0x20);
}

static void pit_irq(struct intr_frame *f)
{
    (void)f;
    pit_ticks++;
    if (pit_hook)
        pit_hook();
    pic_eoi(0);
}

void pit_start(uint32_t hz, void (*hook)(void))
{
    uint32_t divisor = PIT_HZ / hz;
    if (divisor == 0 || divisor > 0xFFFF)
        guest_panic(EXIT_BAD_CONFIG, "pit: unsupported rate %u Hz", hz);
    pit_hook = hook;
    isr_set_handler(PIC_VECTOR_BASE + 0, pit_irq);
    outb(0x43, 0x34); /* channel 0, lobyte/hibyte, mode 2 (rate generator), binary */
    outb(0x40, (uint8_t)divisor);
    outb(0x40, (uint8_t)(divisor >> 8));
    pic_unmask(0);
}

void pit_stop(void)
{
    pic_mask(0);
    outb(0x43, 0x30); /* channel 0, mode 0: no further periodic output until a count is written */
    pit_hook = 0;
}

void pit_sleep_ticks(uint64_t ticks)
{
    uint64_t target = pit_ticks + ticks;
    cpu_cli();
    while (pit_ticks < target) {
        cpu_sti_hlt();
        cpu_cli();
    }
}
