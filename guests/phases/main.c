/*
 * phases: behaviour changes halfway. Phase 1 (ms/2): vCPUs 0 and 1 play IPI
 * ping-pong (latency bound) while vCPUs 2 and 3 sleep in HLT, waiting. Phase 2
 * (ms/2): vCPUs 2 and 3 compute; vCPUs 0 and 1 wake every `period` us from
 * their LAPIC timers (overcommitted on 2 pCPUs). Command line: ms=N (default
 * 100), period=US (default 200), work=N (steps per ping, default 200).
 * Needs --vcpus 4.
 */
#include "idle_workload.h"

static volatile uint32_t phase;
static uint32_t period_ns, work_iters;

static void ap_main(unsigned idx)
{
    (void)idx;
    unsigned cpu = lapic_id(); /* roles by APIC id: AP indexes follow check-in order */
    uint32_t seen = 0;
    if (cpu == 1) {
        while (phase == 1) {
            seen = iw_wait_kick(seen);
            if (phase != 1 || iw_stop)
                break;
            iw_compute(work_iters);
            iw_sleep_ns(5000); /* service time, as in ipipong */
            iw_wakes[1]++;
            iw_kick(0);
        }
        while (!iw_stop) {
            iw_sleep_ns(period_ns);
            iw_compute(50);
            iw_wakes[1]++;
        }
    } else if (cpu <= 3) {
        while (phase == 1 && !iw_stop)
            seen = iw_wait_kick(seen);
        while (!iw_stop)
            iw_compute(2000);
    }
    iw_checkin();
}

int guest_main(struct boot_info *bi)
{
    uint32_t ms, period_us;
    if (cmdline_get_u32(bi->cmdline, "ms", 100, &ms) < 0 || cmdline_get_u32(bi->cmdline, "period", 200, &period_us) < 0 ||
        cmdline_get_u32(bi->cmdline, "work", 200, &work_iters) < 0 || period_us == 0 || ms < 2)
        guest_panic(EXIT_BAD_CONFIG, "phases: bad ms=, period= or work=");
    period_ns = period_us * 1000u;
    phase = 1;
    unsigned cpus = iw_start(ap_main, 4);
    /* Phase 1: ping-pong until the BSP's LAPIC timer ends it. */
    iw_timer_fired[0] = 0;
    lapic_write(LAPIC_TIMER_DIV, 0xB);
    lapic_write(LAPIC_LVT_TIMER, IW_TIMER_VECTOR);
    lapic_write(LAPIC_TIMER_INIT, ms / 2 * 1000000u);
    uint32_t seen = 0;
    while (!iw_timer_fired[0]) {
        iw_kick(1);
        uint32_t before = seen;
        while (seen == before && !iw_timer_fired[0]) {
            cpu_cli();
            if (iw_kicks[0] == seen && !iw_timer_fired[0])
                cpu_sti_hlt();
            cpu_sti();
            seen = iw_kicks[0];
        }
        iw_compute(work_iters);
        iw_wakes[0]++;
    }
    /* Phase 2. */
    phase = 2;
    for (unsigned i = 1; i < cpus; i++)
        iw_kick(i);
    uint64_t wakes = (uint64_t)(ms - ms / 2) * 1000u / period_us;
    for (uint64_t i = 0; i < wakes; i++) {
        iw_sleep_ns(period_ns);
        iw_compute(50);
        iw_wakes[0]++;
    }
    iw_finish("phases", cpus);
    return EXIT_OK;
}
