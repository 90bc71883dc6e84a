/*
 * spin: a vCPU that never idles (a busy loop; only its PIT handler interrupts it) until
 * `ms` milliseconds of PIT time pass, to check that the scheduler keeps it
 * from starving other VMs. Command line: ms=N (default 1000).
 */
#include "x86_64.h"

static volatile uint64_t sink;

int guest_main(struct boot_info *bi)
{
    uint32_t ms;
    if (cmdline_get_u32(bi->cmdline, "ms", 1000, &ms) < 0)
        guest_panic(EXIT_BAD_CONFIG, "spin: bad ms=");
    pic_init();
    pit_start(1000, 0);
    cpu_sti();
    extern volatile uint64_t pit_ticks;
    kprintf("spin: spinning for %u ms\n", ms);
    uint64_t x = 1;
    while (pit_ticks < ms) {
        x = x * 6364136223846793005ull + 1;
        sink = x;
    }
    pit_stop();
    kprintf("spin: done\n");
    return EXIT_OK;
}
