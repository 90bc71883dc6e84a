/*
 * smp: starts every application processor with INIT-SIPI-SIPI (broadcast),
 * counts the CPUs that check in within a bounded PIT-timed window, has every
 * CPU add ITERATIONS to a shared counter with LOCK INC, prints the count.
 * Command line: window=MS (check-in window, default 250).
 */
#include "x86_64.h"

#define ITERATIONS 100000u
#define CHECKIN_WINDOW_MS 250u
#define FINISH_TIMEOUT_MS 10000u

static volatile uint64_t counter;
static volatile uint32_t go, finished;
static volatile uint32_t ap_apic_ids[SMP_MAX_APS];

static void add_iterations(void)
{
    for (uint32_t i = 0; i < ITERATIONS; i++)
        __asm__ volatile("lock incq %0" : "+m"(counter)::"memory");
}

static void ap_work(unsigned idx)
{
    if (idx < SMP_MAX_APS)
        ap_apic_ids[idx] = lapic_id();
    while (!__atomic_load_n(&go, __ATOMIC_ACQUIRE))
        cpu_pause();
    add_iterations();
    __atomic_fetch_add(&finished, 1, __ATOMIC_RELEASE);
}

int guest_main(struct boot_info *bi)
{
    uint32_t window;
    if (cmdline_get_u32(bi->cmdline, "window", CHECKIN_WINDOW_MS, &window) < 0)
        guest_panic(EXIT_BAD_CONFIG, "smp: window= must be a number of milliseconds");
    pic_init();
    pit_start(1000, 0);
    uint32_t bsp_id = (lapic_enable(), lapic_id());
    kputs("smp: starting application processors with INIT-SIPI-SIPI\n");
    unsigned aps = smp_start_aps(ap_work, window);
    kprintf("smp: %u CPU(s) online\n", aps + 1);

    for (unsigned i = 0; i < aps; i++) {
        CHECK(ap_apic_ids[i] != bsp_id, "smp: AP %u reports the BSP's LAPIC id %u", i, bsp_id);
        for (unsigned j = 0; j < i; j++)
            CHECK(ap_apic_ids[i] != ap_apic_ids[j], "smp: APs %u and %u share LAPIC id %u", j, i, ap_apic_ids[i]);
    }
    kputs("smp: LAPIC ids are distinct\n");

    __atomic_store_n(&go, 1, __ATOMIC_RELEASE);
    add_iterations();
    uint64_t deadline = pit_ticks + FINISH_TIMEOUT_MS;
    cpu_cli();
    while (__atomic_load_n(&finished, __ATOMIC_ACQUIRE) < aps && pit_ticks < deadline) {
        cpu_sti_hlt();
        cpu_cli();
    }
    pit_stop();
    CHECK(finished == aps, "smp: only %u of %u APs finished", finished, aps);
    uint64_t expected = (uint64_t)(aps + 1) * ITERATIONS;
    kprintf("smp: shared counter %llu (expected %llu)\n", (unsigned long long)counter, (unsigned long long)expected);
    CHECK(counter == expected, "smp: lost LOCK increments");
    kputs("smp: done\n");
    return EXIT_OK;
}
