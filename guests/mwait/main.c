/*
 * mwait: idles on a monitored cache line and is woken by a write to it.
 *   - MONITOR/MWAIT if CPUID.1:ECX.MONITOR[3], otherwise STI;HLT.
 *   - With a second CPU (started with INIT-SIPI-SIPI) the AP writes the line
 *     (and, when HLT is used, sends an IPI since a plain write cannot end HLT).
 *   - With one CPU a PIT interrupt handler writes the line.
 * The transcript does not depend on which mechanism was used.
 * Command line: window=MS (AP check-in window, default 250); verbose=1 also
 * prints the mechanism (diagnostics only: not part of the golden transcripts).
 */
#include "x86_64.h"

#define ROUNDS 8u
#define WAKE_IPI_VECTOR 0x41
#define TIMER_DELAY_TICKS 3u
#define CHECKIN_WINDOW_MS 250u

static volatile uint64_t wake_line[8] __attribute__((aligned(64))); /* one cache line */
static volatile uint32_t request;
static volatile uint32_t countdown;
static bool has_monitor;
static uint32_t bsp_apic_id;

static void wake_ipi_isr(struct intr_frame *f)
{
    (void)f;
    lapic_eoi();
}

/* PIT tick: in single-CPU mode, the interrupt handler is the waker. */
static void tick_hook(void)
{
    if (countdown && --countdown == 0)
        __atomic_store_n(&wake_line[0], request, __ATOMIC_RELEASE);
}

static void ap_waker(unsigned idx)
{
    if (idx != 0)
        return; /* one waker is enough; other APs halt */
    for (uint32_t i = 1; i <= ROUNDS; i++) {
        while (__atomic_load_n(&request, __ATOMIC_ACQUIRE) != i)
            cpu_pause();
        for (uint32_t spin = 0; spin < 20000; spin++) /* let the BSP go to sleep */
            cpu_pause();
        __atomic_store_n(&wake_line[0], i, __ATOMIC_RELEASE);
        if (!has_monitor)
            lapic_send_ipi(bsp_apic_id, WAKE_IPI_VECTOR); /* fixed, edge */
    }
}

static void wait_for(uint32_t seq)
{
    cpu_cli();
    while (__atomic_load_n(&wake_line[0], __ATOMIC_ACQUIRE) != seq) {
        if (has_monitor) {
            __asm__ volatile("monitor" ::"a"(&wake_line[0]), "c"(0), "d"(0));
            if (__atomic_load_n(&wake_line[0], __ATOMIC_ACQUIRE) != seq)
                __asm__ volatile("sti; mwait; cli" ::"a"(0), "c"(0) : "memory");
        } else {
            cpu_sti_hlt();
            cpu_cli();
        }
    }
}

int guest_main(struct boot_info *bi)
{
    uint32_t window, verbose;
    if (cmdline_get_u32(bi->cmdline, "window", CHECKIN_WINDOW_MS, &window) < 0 ||
        cmdline_get_u32(bi->cmdline, "verbose", 0, &verbose) < 0)
        guest_panic(EXIT_BAD_CONFIG, "mwait: bad window= or verbose= option");
    uint32_t a, b, c, d;
    cpuid(1, 0, &a, &b, &c, &d);
    has_monitor = (c >> 3) & 1;

    pic_init();
    pit_start(1000, tick_hook);
    lapic_enable();
    bsp_apic_id = lapic_id();
    isr_set_handler(WAKE_IPI_VECTOR, wake_ipi_isr);
    unsigned aps = smp_start_aps(ap_waker, window);
    if (aps > 0)
        pit_stop(); /* only the AP's writes (and IPIs) wake us */
    if (verbose)
        kprintf("mwait: [verbose] idle with %s, woken by %s\n", has_monitor ? "MONITOR/MWAIT" : "STI;HLT",
                aps > 0 ? (has_monitor ? "AP writes" : "AP writes + IPI") : "PIT interrupt handler writes");

    kprintf("mwait: waiting for %u wake-ups of a monitored cache line\n", ROUNDS);
    for (uint32_t i = 1; i <= ROUNDS; i++) {
        __atomic_store_n(&request, i, __ATOMIC_RELEASE);
        if (aps == 0)
            countdown = TIMER_DELAY_TICKS;
        wait_for(i);
        CHECK(wake_line[0] == i, "mwait: line holds %llu, expected %u", (unsigned long long)wake_line[0], i);
        kprintf("mwait: wake-up %u ok\n", i);
    }
    if (aps == 0)
        pit_stop();
    kputs("mwait: done\n");
    return EXIT_OK;
}
