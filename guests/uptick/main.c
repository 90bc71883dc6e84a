/*
 * uptick: a long-running guest for live update (docs/live-update.md).
 * The PIT ticks at 1000 Hz. Every round (period=MS of PIT time, idling in HLT)
 * the guest checks that the previous round's pattern is still in its buffer,
 * rewrites the buffer (kib=N KiB) with this round's pattern, so memory is
 * dirtied every round, and prints the round, the PIT tick count and a
 * checksum. It asks the hypervisor its version (hypercall 0) every round and
 * prints a line only when the answer changes: a run updated to a hypervisor
 * with a new version differs from an un-updated one by exactly that line.
 * With more than one vCPU every AP counts its own LAPIC timer interrupts into
 * a shared counter, idling in HLT between them, and every round checks that
 * the counter moved on.
 * Command line: rounds=N (default 40), period=MS (default 20), kib=N (default 512, at most 2048).
 */
#include "x86_64.h"

#define MAX_KIB 2048u
#define HC_VERSION 0u
#define AP_TIMER_VECTOR 0x41

static uint64_t buffer[MAX_KIB * 1024 / 8];
static volatile uint64_t ap_counter;
static volatile uint32_t aps_stop;

static inline uint64_t hypercall(uint64_t fn, uint64_t arg)
{
    uint64_t r;
    __asm__ volatile("vmcall" : "=a"(r) : "a"(fn), "b"(arg) : "memory");
    return r;
}

static inline uint64_t word(uint32_t round, uint64_t i)
{
    return (i + 1) * 0x9E3779B97F4A7C15ull ^ ((uint64_t)round << 40 | round);
}

static void ap_tick(struct intr_frame *f)
{
    (void)f;
    __atomic_fetch_add(&ap_counter, 1, __ATOMIC_RELAXED);
    lapic_eoi();
}

static void ap_count(unsigned idx)
{
    (void)idx;
    lapic_enable();
    lapic_write(LAPIC_REG_TMR_DIV, 0x3);                         /* divide by 16 */
    lapic_write(LAPIC_REG_LVT_TMR, AP_TIMER_VECTOR | (1u << 17)); /* periodic */
    lapic_write(LAPIC_REG_TMR_INIT, 100000);
    while (!__atomic_load_n(&aps_stop, __ATOMIC_ACQUIRE))
        cpu_sti_hlt();
    lapic_write(LAPIC_REG_LVT_TMR, 1u << 16);
    ap_halt_forever();
}

int guest_main(struct boot_info *bi)
{
    uint32_t rounds, period, kib;
    if (cmdline_get_u32(bi->cmdline, "rounds", 40, &rounds) < 0 || rounds == 0)
        guest_panic(EXIT_BAD_CONFIG, "uptick: rounds= must be a positive integer");
    if (cmdline_get_u32(bi->cmdline, "period", 20, &period) < 0 || period == 0)
        guest_panic(EXIT_BAD_CONFIG, "uptick: period= must be a positive number of milliseconds");
    if (cmdline_get_u32(bi->cmdline, "kib", 512, &kib) < 0 || kib == 0 || kib > MAX_KIB)
        guest_panic(EXIT_BAD_CONFIG, "uptick: kib= must be 1..2048");
    uint64_t words = (uint64_t)kib * 1024 / 8;

    pic_init();
    pit_start(1000, 0);
    lapic_enable();
    isr_set_handler(AP_TIMER_VECTOR, ap_tick);
    unsigned aps = smp_start_aps(ap_count, 50);
    kprintf("uptick: %u round(s) of %u ms, %u KiB dirtied per round, %u AP(s) counting\n", rounds, period, kib, aps);

    uint64_t version = ~0ull, last_ticks = pit_ticks, last_aps = 0;
    for (uint32_t r = 1; r <= rounds; r++) {
        pit_sleep_ticks(period);
        uint64_t v = hypercall(HC_VERSION, 0);
        if (v != version) {
            kprintf("uptick: hypervisor version %lu\n", v);
            version = v;
        }
        uint64_t sum = 0;
        for (uint64_t i = 0; i < words; i++) {
            if (r > 1 && buffer[i] != word(r - 1, i))
                guest_panic(EXIT_CHECK_FAIL, "uptick: round %u: word %lu lost the previous round's pattern", r, i);
            buffer[i] = word(r, i);
            sum += buffer[i] * (i | 1);
        }
        uint64_t ticks = pit_ticks;
        CHECK(ticks - last_ticks >= period, "uptick: round %u: only %lu PIT ticks in a %u ms round", r, ticks - last_ticks, period);
        last_ticks = ticks;
        if (aps) {
            uint64_t c = __atomic_load_n(&ap_counter, __ATOMIC_RELAXED);
            CHECK(c > last_aps, "uptick: round %u: the APs stopped counting", r);
            last_aps = c;
        }
        kprintf("uptick: round %u ticks %lu sum %#lx\n", r, ticks, sum);
    }
    __atomic_store_n(&aps_stop, 1, __ATOMIC_RELEASE);
    pit_stop();
    kputs("uptick: done\n");
    return EXIT_OK;
}
