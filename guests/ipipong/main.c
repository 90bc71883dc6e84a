/*
 * ipipong: IPI ping-pong between two vCPUs, latency bound. The BSP kicks the
 * AP, the AP does a little work, takes `delay` us of service time (a LAPIC
 * timer sleep, like a device answering) and kicks back; each side waits in
 * HLT. Command line: rounds=N (default 2000), work=N (xorshift steps per
 * message, default 200), delay=US (default 5). Needs --vcpus 2.
 */
#include "idle_workload.h"

static uint32_t work_iters, delay_ns;

static void ap_main(unsigned idx)
{
    (void)idx;
    if (lapic_id() != 1) {
        iw_checkin();
        return;
    }
    uint32_t seen = 0;
    for (;;) {
        seen = iw_wait_kick(seen);
        if (iw_stop)
            break;
        iw_compute(work_iters);
        iw_sleep_ns(delay_ns);
        iw_wakes[1]++;
        iw_kick(0);
    }
    iw_checkin();
}

int guest_main(struct boot_info *bi)
{
    uint32_t rounds, delay_us;
    if (cmdline_get_u32(bi->cmdline, "rounds", 2000, &rounds) < 0 || cmdline_get_u32(bi->cmdline, "work", 200, &work_iters) < 0 ||
        cmdline_get_u32(bi->cmdline, "delay", 5, &delay_us) < 0 || delay_us > 1000000)
        guest_panic(EXIT_BAD_CONFIG, "ipipong: bad rounds=, work= or delay=");
    delay_ns = delay_us * 1000u;
    unsigned cpus = iw_start(ap_main, 2);
    uint32_t seen = 0;
    for (uint32_t r = 0; r < rounds; r++) {
        iw_kick(1);
        seen = iw_wait_kick(seen);
        iw_compute(work_iters);
        iw_wakes[0]++;
    }
    iw_finish("ipipong", cpus);
    return EXIT_OK;
}
