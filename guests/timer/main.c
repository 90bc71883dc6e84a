/*
 * timer: interrupt delivery. Remaps the 8259 PIC, takes TICKS interrupts
 * from PIT channel 0 (IRQ0, 1000 Hz), then TICKS interrupts from the local
 * APIC timer (periodic), idling in HLT in between.
 * Command line: ticks=N (default 20); idle=MS switches to the idle-cost
 * bench mode: only idle MS milliseconds of PIT time in HLT; halt=1 halts with
 * no timer armed and interrupts enabled, until reset (what an idle VM with nothing
 * to wake it costs the host).
 */
#include "x86_64.h"

#define DEFAULT_TICKS 20u
#define LAPIC_TIMER_VECTOR 0x40

static volatile uint32_t pit_count, lapic_count, target;

static void pit_tick(void)
{
    if (pit_count < target)
        pit_count++;
}

static void lapic_timer_isr(struct intr_frame *f)
{
    (void)f;
    if (lapic_count < target)
        lapic_count++;
    lapic_eoi();
}

static void idle_until(volatile uint32_t *count, uint32_t n)
{
    cpu_cli();
    while (*count < n) {
        cpu_sti_hlt();
        cpu_cli();
    }
}

static int idle_mode(uint32_t ms)
{
    pic_init();
    pit_start(1000, 0);
    kprintf("timer: idle mode, %u ms of PIT time in HLT\n", ms);
    pit_sleep_ticks(ms);
    pit_stop();
    kprintf("timer: idle done\n");
    return EXIT_OK;
}

static int halt_mode(void)
{
    pic_init();
    pit_stop(); /* the loader (SeaBIOS under QEMU) left PIT channel 0 running */
    kputs("timer: halt mode, no timer armed, HLT with interrupts enabled until reset\n");
    for (;;)
        cpu_sti_hlt();
    return EXIT_OK;
}

int guest_main(struct boot_info *bi)
{
    uint32_t idle_ms, ticks, halt;
    if (cmdline_get_u32(bi->cmdline, "halt", 0, &halt) > 0 && halt)
        return halt_mode();
    int idle = cmdline_get_u32(bi->cmdline, "idle", 0, &idle_ms);
    if (idle < 0)
        guest_panic(EXIT_BAD_CONFIG, "timer: idle= must be a number of milliseconds");
    if (idle > 0)
        return idle_mode(idle_ms);
    if (cmdline_get_u32(bi->cmdline, "ticks", DEFAULT_TICKS, &ticks) < 0 || ticks == 0)
        guest_panic(EXIT_BAD_CONFIG, "timer: ticks= must be a positive integer");
    target = ticks;

    pic_init();
    kputs("timer: 8259 PIC remapped to vectors 0x20-0x2f\n");
    pit_start(1000, pit_tick);
    kprintf("timer: PIT channel 0 at 1000 Hz on IRQ0, waiting for %u interrupts in HLT\n", ticks);
    idle_until(&pit_count, ticks);
    pit_stop();
    kprintf("timer: PIT interrupts %u/%u\n", pit_count, ticks);

    lapic_enable();
    isr_set_handler(LAPIC_TIMER_VECTOR, lapic_timer_isr);
    lapic_write(LAPIC_REG_TMR_DIV, 0x3);                          /* divide by 16 */
    lapic_write(LAPIC_REG_LVT_TMR, LAPIC_TIMER_VECTOR | (1u << 17)); /* periodic */
    lapic_write(LAPIC_REG_TMR_INIT, 100000);
    kprintf("timer: LAPIC timer periodic on vector %#x, waiting for %u interrupts in HLT\n", LAPIC_TIMER_VECTOR, ticks);
    idle_until(&lapic_count, ticks);
    lapic_write(LAPIC_REG_LVT_TMR, 1u << 16); /* masked */
    lapic_write(LAPIC_REG_TMR_INIT, 0);
    kprintf("timer: LAPIC timer interrupts %u/%u\n", lapic_count, ticks);
    kputs("timer: done\n");
    return EXIT_OK;
}
