/*
 * tsccal: the TSC as a guest OS sees it. Reads CPUID 0x15/0x16 and the
 * invariant-TSC bit, then calibrates the TSC against PIT channel 2 the two
 * ways Linux does (arch/x86/kernel/tsc.c): pit_calibrate_tsc (mode 0, poll
 * OUT2 on port 0x61 for a 10 ms latch) and quick_pit_calibrate (count down
 * from 0xffff, time the MSB of the count). Then checks that RDTSC never goes
 * back, that IA32_TSC writes move it, and that RDTSCP returns IA32_TSC_AUX.
 * Prints every frequency in kHz: with a TSC on virtual time they agree with
 * CPUID and are the same on every run.
 * Command line: ms=N (calibration latch, default 10); reads=N only runs N
 * RDTSCs and exits (the cost of an RDTSC exit, bench/ and docs/conformance.md);
 * warp=N only runs Linux's check_tsc_warp between every CPU (--vcpus 2+): each
 * takes a lock N times, reads its TSC and checks it is not behind the last
 * value any CPU read under the lock.
 */
#include "x86_64.h"

#define MSR_TSC     0x10
#define MSR_TSC_AUX 0xC0000103
#define MSR_TSC_DEADLINE 0x6E0
#define DEADLINE_VECTOR 0x41
#define DEADLINE_TICKS 2000000ull /* 1 ms at 2 GHz */
#define MSB_STEPS   16u

/* Calibration latch in ms (Linux: 10); ms=N on the command line. */
static uint32_t cal_ms = 10;

static inline uint64_t rdtsc(void)
{
    uint32_t lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return (uint64_t)hi << 32 | lo;
}

static inline uint64_t rdtscp(uint32_t *aux)
{
    uint32_t lo, hi;
    __asm__ volatile("rdtscp" : "=a"(lo), "=d"(hi), "=c"(*aux));
    return (uint64_t)hi << 32 | lo;
}

/* outb(port, value) here. Gate channel 2 on, speaker off; mode 0, lobyte/hibyte, `count`. */
static void pit2_start(uint16_t count)
{
    outb(0x61, (inb(0x61) & ~0x02) | 0x01);
    outb(0x43, 0xb0);
    outb(0x42, count & 0xff);
    outb(0x42, count >> 8);
}

/* pit_calibrate_tsc: TSC kHz over a CAL_MS latch, and the loop count. */
static uint64_t pit_calibrate(uint64_t *loops)
{
    uint32_t latch = PIT_HZ * cal_ms / 1000;
    pit2_start(latch);
    uint64_t t1 = rdtsc(), t2 = t1, n = 0;
    while ((inb(0x61) & 0x20) == 0) {
        t2 = rdtsc();
        n++;
    }
    *loops = n;
    /* Exact: the latch lasts latch/PIT_HZ seconds (Linux divides by ms). */
    return (t2 - t1) * PIT_HZ / latch / 1000;
}

static uint8_t pit2_msb(void)
{
    inb(0x42); /* LSB */
    return inb(0x42);
}

/* quick_pit_calibrate: TSC kHz over MSB_STEPS decrements of the count's MSB (256 PIT clocks each). */
static uint64_t quick_calibrate(void)
{
    pit2_start(0xffff);
    uint8_t msb = pit2_msb();
    while (pit2_msb() == msb)
        ;
    uint64_t t1 = rdtsc();
    uint8_t want = (uint8_t)(msb - 1 - MSB_STEPS);
    while (pit2_msb() != want)
        ;
    uint64_t t2 = rdtsc();
    return (t2 - t1) * PIT_HZ / (MSB_STEPS * 256u) / 1000;
}

static volatile uint64_t fired_at;

/* check_tsc_warp: a TSC read under the lock must never be behind the previous one, whichever CPU took it. */
static volatile uint32_t warp_lock, warp_go, warp_done;
static volatile uint64_t warp_last, warp_reads, warp_warps, warp_worst;
static uint32_t warp_loops;

static void warp_check(void)
{
    for (uint32_t i = 0; i < warp_loops; i++) {
        while (__atomic_exchange_n(&warp_lock, 1, __ATOMIC_ACQUIRE))
            cpu_pause();
        uint64_t now = rdtsc();
        if (now < warp_last) {
            warp_warps++;
            if (warp_last - now > warp_worst)
                warp_worst = warp_last - now;
        }
        warp_last = now;
        warp_reads++;
        __atomic_store_n(&warp_lock, 0, __ATOMIC_RELEASE);
    }
}

static void warp_ap(unsigned idx)
{
    (void)idx;
    while (!__atomic_load_n(&warp_go, __ATOMIC_ACQUIRE))
        cpu_pause();
    warp_check();
    __atomic_fetch_add(&warp_done, 1, __ATOMIC_RELEASE);
}

static int warp_mode(uint32_t loops)
{
    warp_loops = loops;
    pic_init();
    pit_start(1000, 0);
    lapic_enable();
    unsigned aps = smp_start_aps(warp_ap, 100);
    CHECK(aps > 0, "tsccal: warp= needs 2 or more CPUs (--vcpus)");
    __atomic_store_n(&warp_go, 1, __ATOMIC_RELEASE);
    warp_check();
    while (__atomic_load_n(&warp_done, __ATOMIC_ACQUIRE) < aps)
        cpu_pause();
    pit_stop();
    kprintf("tsccal: %u CPUs, %llu reads under the lock, %llu warps (worst %llu ticks)\n", aps + 1, (unsigned long long)warp_reads, (unsigned long long)warp_warps, (unsigned long long)warp_worst);
    CHECK(warp_warps == 0, "tsccal: TSC warp between CPUs");
    return EXIT_OK;
}

static void deadline_isr(struct intr_frame *f)
{
    (void)f;
    fired_at = rdtsc();
    lapic_eoi();
}

/* LVT timer in TSC-deadline mode: arm 1 ms ahead, HLT until it fires. */
static void deadline_test(void)
{
    lapic_enable();
    isr_set_handler(DEADLINE_VECTOR, deadline_isr);
    lapic_write(LAPIC_REG_LVT_TMR, DEADLINE_VECTOR | (2u << 17));
    uint64_t due = rdtsc() + DEADLINE_TICKS;
    wrmsr(MSR_TSC_DEADLINE, due);
    CHECK(rdmsr(MSR_TSC_DEADLINE) == due, "tsccal: IA32_TSC_DEADLINE reads %llu, wrote %llu", (unsigned long long)rdmsr(MSR_TSC_DEADLINE), (unsigned long long)due);
    cpu_cli();
    while (!fired_at) {
        cpu_sti_hlt();
        cpu_cli();
    }
    CHECK(fired_at >= due, "tsccal: deadline timer fired %llu ticks early", (unsigned long long)(due - fired_at));
    CHECK(rdmsr(MSR_TSC_DEADLINE) == 0, "tsccal: IA32_TSC_DEADLINE not cleared after it fired");
    kprintf("tsccal: TSC deadline fired %llu ticks after the deadline\n", (unsigned long long)(fired_at - due));
    /* The deadline compares against the TSC: jumping the TSC 1 ms ahead brings an armed deadline 1 ms closer. */
    fired_at = 0;
    due = rdtsc() + 2 * DEADLINE_TICKS;
    wrmsr(MSR_TSC_DEADLINE, due);
    wrmsr(MSR_TSC, rdtsc() + DEADLINE_TICKS);
    cpu_cli();
    while (!fired_at) {
        cpu_sti_hlt();
        cpu_cli();
    }
    CHECK(fired_at >= due && fired_at - due < DEADLINE_TICKS / 2, "tsccal: after an IA32_TSC write the deadline fired at %llu, due %llu", (unsigned long long)fired_at, (unsigned long long)due);
    kprintf("tsccal: after an IA32_TSC write it fired %llu ticks after the deadline\n", (unsigned long long)(fired_at - due));
    /* Leaving deadline mode disarms: a deadline armed now never fires. */
    fired_at = 0;
    wrmsr(MSR_TSC_DEADLINE, rdtsc() + DEADLINE_TICKS);
    lapic_write(LAPIC_REG_LVT_TMR, DEADLINE_VECTOR);
    CHECK(rdmsr(MSR_TSC_DEADLINE) == 0, "tsccal: a mode switch left IA32_TSC_DEADLINE armed");
    lapic_write(LAPIC_REG_LVT_TMR, 1u << 16);
}

int guest_main(struct boot_info *bi)
{
    uint32_t a, b, c, d, max, reads;
    if (cmdline_get_u32(bi->cmdline, "reads", 0, &reads) < 0)
        guest_panic(EXIT_BAD_CONFIG, "tsccal: reads= must be a number");
    if (reads) {
        uint64_t first = rdtsc(), last = first;
        for (uint32_t i = 0; i < reads; i++)
            last = rdtsc();
        kprintf("tsccal: %u reads, %llu ticks\n", reads, (unsigned long long)(last - first));
        return EXIT_OK;
    }
    uint32_t warp;
    if (cmdline_get_u32(bi->cmdline, "warp", 0, &warp) < 0)
        guest_panic(EXIT_BAD_CONFIG, "tsccal: warp= must be a number");
    if (warp)
        return warp_mode(warp);
    if (cmdline_get_u32(bi->cmdline, "ms", 10, &cal_ms) < 0 || cal_ms == 0 || cal_ms > 50)
        guest_panic(EXIT_BAD_CONFIG, "tsccal: ms= must be 1..50");
    cpuid(0, 0, &max, &b, &c, &d);
    uint64_t cpuid_khz = 0;
    if (max >= 0x15) {
        cpuid(0x15, 0, &a, &b, &c, &d);
        kprintf("tsccal: cpuid 0x15 ratio %u/%u crystal %u Hz\n", b, a, c);
        if (a && b && c)
            cpuid_khz = (uint64_t)c * b / a / 1000;
    }
    if (max >= 0x16) {
        cpuid(0x16, 0, &a, &b, &c, &d);
        kprintf("tsccal: cpuid 0x16 base %u MHz max %u MHz bus %u MHz\n", a, b, c);
    }
    cpuid(0x80000007, 0, &a, &b, &c, &d);
    kprintf("tsccal: invariant TSC %s\n", (d >> 8) & 1 ? "yes" : "no");
    kprintf("tsccal: cpuid TSC %llu kHz\n", (unsigned long long)cpuid_khz);

    uint64_t loops;
    uint64_t slow = pit_calibrate(&loops);
    kprintf("tsccal: pit_calibrate %llu kHz (%llu loops)\n", (unsigned long long)slow, (unsigned long long)loops);
    uint64_t quick = quick_calibrate();
    kprintf("tsccal: quick_pit_calibrate %llu kHz\n", (unsigned long long)quick);

    uint64_t prev = rdtsc();
    for (int i = 0; i < 1000; i++) {
        uint64_t t = rdtsc();
        CHECK(t >= prev, "tsccal: TSC went back from %llu to %llu", (unsigned long long)prev, (unsigned long long)t);
        prev = t;
    }
    kputs("tsccal: 1000 reads monotonic\n");

    wrmsr(MSR_TSC, 1ull << 40);
    uint64_t after = rdtsc();
    CHECK(after >= 1ull << 40 && after - (1ull << 40) < 1000000, "tsccal: TSC reads %llu after writing 2^40", (unsigned long long)after);
    CHECK(rdmsr(MSR_TSC) >= after, "tsccal: IA32_TSC behind RDTSC");
    kputs("tsccal: IA32_TSC write moves RDTSC\n");

    wrmsr(MSR_TSC_AUX, 0x1234);
    uint32_t aux = 0;
    uint64_t t = rdtscp(&aux);
    CHECK(aux == 0x1234 && t >= after, "tsccal: RDTSCP aux %#x tsc %llu", aux, (unsigned long long)t);
    kputs("tsccal: RDTSCP returns IA32_TSC_AUX\n");

    cpuid(1, 0, &a, &b, &c, &d);
    if ((c >> 24) & 1)
        deadline_test();
    else
        kputs("tsccal: no TSC-deadline timer\n");
    return EXIT_OK;
}
