/*
 * Building blocks of the idling workload guests (ipipong, overcommit,
 * phases): LAPIC one-shot sleeps in HLT, IPI kicks, a unit of compute work,
 * per-CPU work counters and a final report. Header-only (static functions):
 * each guest includes it once.
 */
#ifndef IDLE_WORKLOAD_H
#define IDLE_WORKLOAD_H
#include "x86_64.h"

#define IW_MAX_CPUS 16u
#define IW_TIMER_VECTOR 0x40
#define IW_KICK_VECTOR 0x41
#define LAPIC_LVT_TIMER 0x320
#define LAPIC_TIMER_INIT 0x380
#define LAPIC_TIMER_DIV 0x3E0

static volatile uint32_t iw_stop;
static volatile uint32_t iw_timer_fired[IW_MAX_CPUS];
static volatile uint32_t iw_kicks[IW_MAX_CPUS];
static volatile uint64_t iw_work[IW_MAX_CPUS];
static volatile uint64_t iw_wakes[IW_MAX_CPUS];
static volatile uint32_t iw_done;
static volatile uint64_t iw_sink;

static __attribute__((unused)) void iw_timer_isr(struct intr_frame *f)
{
    (void)f;
    iw_timer_fired[lapic_id() % IW_MAX_CPUS] = 1;
    lapic_eoi();
}

static __attribute__((unused)) void iw_kick_isr(struct intr_frame *f)
{
    (void)f;
    iw_kicks[lapic_id() % IW_MAX_CPUS]++;
    lapic_eoi();
}

static __attribute__((unused)) void iw_install(void)
{
    isr_set_handler(IW_TIMER_VECTOR, iw_timer_isr);
    isr_set_handler(IW_KICK_VECTOR, iw_kick_isr);
}

/* Sleep `ns` of LAPIC time (bus clock 1 GHz, divide by 1) in HLT; a stop request ends it early. */
static __attribute__((unused)) void iw_sleep_ns(uint32_t ns)
{
    uint32_t id = lapic_id() % IW_MAX_CPUS;
    iw_timer_fired[id] = 0;
    lapic_write(LAPIC_TIMER_DIV, 0xB);
    lapic_write(LAPIC_LVT_TIMER, IW_TIMER_VECTOR); /* one-shot, unmasked */
    lapic_write(LAPIC_TIMER_INIT, ns ? ns : 1);
    cpu_cli();
    while (!iw_timer_fired[id] && !iw_stop) {
        cpu_sti_hlt();
        cpu_cli();
    }
    cpu_sti();
}

/* HLT until a kick IPI arrives after `seen` (returns the new kick count) or a stop. */
static __attribute__((unused)) uint32_t iw_wait_kick(uint32_t seen)
{
    uint32_t id = lapic_id() % IW_MAX_CPUS;
    cpu_cli();
    while (iw_kicks[id] == seen && !iw_stop) {
        cpu_sti_hlt();
        cpu_cli();
    }
    cpu_sti();
    return iw_kicks[id];
}

static __attribute__((unused)) void iw_kick(uint32_t apic_id)
{
    lapic_send_ipi(apic_id, IW_KICK_VECTOR); /* fixed, edge, physical */
}

/* One unit of compute work (~`iters` xorshift steps), counted for this CPU. */
static __attribute__((unused)) void iw_compute(uint32_t iters)
{
    uint64_t x = 0x9E3779B97F4A7C15ull ^ iw_work[lapic_id() % IW_MAX_CPUS];
    for (uint32_t i = 0; i < iters; i++) {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
    }
    iw_sink += x;
    iw_work[lapic_id() % IW_MAX_CPUS]++;
}

static __attribute__((unused)) void iw_checkin(void)
{
    __atomic_fetch_add(&iw_done, 1, __ATOMIC_SEQ_CST);
}

/* The BSP stops everyone, waits for `aps` check-ins and prints the counters. */
static __attribute__((unused)) void iw_finish(const char *name, unsigned cpus)
{
    __atomic_store_n(&iw_stop, 1, __ATOMIC_SEQ_CST);
    for (unsigned i = 1; i < cpus; i++)
        iw_kick(i);
    while (__atomic_load_n(&iw_done, __ATOMIC_SEQ_CST) < cpus - 1) {
        for (unsigned i = 1; i < cpus; i++)
            iw_kick(i);
        iw_sleep_ns(20000);
    }
    for (unsigned i = 0; i < cpus; i++)
        kprintf("%s: cpu %u work %llu wakes %llu\n", name, i, (unsigned long long)iw_work[i], (unsigned long long)iw_wakes[i]);
    kprintf("%s: done\n", name);
}

/* INIT-SIPI-SIPI the APs (PIT at 1 kHz meanwhile), then stop the PIT: only LAPIC timers and IPIs wake anyone. */
static __attribute__((unused)) unsigned iw_start(ap_main_t ap_main, unsigned want)
{
    pic_init();
    pit_start(1000, 0);
    lapic_enable();
    iw_install();
    unsigned aps = smp_start_aps(ap_main, 50);
    pit_stop();
    if (aps + 1 < want)
        guest_panic(EXIT_CHECK_FAIL, "idle workload: %u vCPUs online, need %u (--vcpus)", aps + 1, want);
    return aps + 1;
}
#endif
