/*
 * overcommit: half the vCPUs compute, half wake often. vCPU 0 and every even
 * vCPU sleep `period` us on their LAPIC timer in HLT and do a little work per
 * wake-up; odd vCPUs compute until vCPU 0 has woken for `ms` milliseconds.
 * Command line: ms=N (default 100), period=US (default 200). Meant for
 * --vcpus 4..8 on --cpus 2.
 */
#include "idle_workload.h"

static uint32_t period_ns;

static void waker(unsigned cpu)
{
    while (!iw_stop) {
        iw_sleep_ns(period_ns);
        iw_compute(50);
        iw_wakes[cpu]++;
    }
}

static void ap_main(unsigned idx)
{
    (void)idx;
    unsigned cpu = lapic_id(); /* roles by APIC id: AP indexes follow check-in order */
    if (cpu % 2)
        while (!iw_stop)
            iw_compute(2000);
    else
        waker(cpu);
    iw_checkin();
}

int guest_main(struct boot_info *bi)
{
    uint32_t ms, period_us;
    if (cmdline_get_u32(bi->cmdline, "ms", 100, &ms) < 0 || cmdline_get_u32(bi->cmdline, "period", 200, &period_us) < 0 || period_us == 0)
        guest_panic(EXIT_BAD_CONFIG, "overcommit: bad ms= or period=");
    period_ns = period_us * 1000u;
    unsigned cpus = iw_start(ap_main, 2);
    uint64_t wakes = (uint64_t)ms * 1000u / period_us;
    for (uint64_t i = 0; i < wakes; i++) {
        iw_sleep_ns(period_ns);
        iw_compute(50);
        iw_wakes[0]++;
    }
    iw_finish("overcommit", cpus);
    return EXIT_OK;
}
