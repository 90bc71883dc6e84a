/*
 * dirtier: dirties memory for migration / dirty-tracking tests. Writes every
 * 8-byte word of a working set of `mib` MiB (physical 8 MiB upwards) in each
 * of `passes` passes, then prints a checksum of the working set.
 * Command line: mib=N (default 16), passes=P (default 4), rate=KiB/s
 * (default 0: as fast as it can). With a rate, the guest writes its quota
 * for each 1 ms PIT tick (rate/1000 KiB, carried over in bytes) and idles in
 * HLT until the next tick, so it dirties memory at that rate of guest time.
 * The words written, and so the checksum, are the same at any rate.
 */
#include "x86_64.h"

#define WS_PHYS 0x800000ull /* 8 MiB: above the kernel image */
#define DEFAULT_MIB 16u
#define DEFAULT_PASSES 4u

static inline uint64_t rotl64(uint64_t v, unsigned s) { return (v << s) | (v >> (64 - s)); }

static inline uint64_t mix(uint64_t i, uint64_t pass)
{
    return (i + 1) * 0x9E3779B97F4A7C15ull ^ pass * 0xC2B2AE3D27D4EB4Full;
}

/* Bytes the guest may have written by now: rate KiB/s of PIT time (1000 Hz) since `t0`. */
static uint64_t quota_bytes(uint64_t t0, uint32_t rate_kib)
{
    return (pit_ticks - t0 + 1) * (uint64_t)rate_kib * 1024 / 1000;
}

/* At a rate: before writing the word at `*written`, idle in HLT until the tick quota allows it. */
static void pace(uint64_t *written, uint64_t t0, uint32_t rate_kib)
{
    *written += 8;
    if (rate_kib == 0 || *written <= quota_bytes(t0, rate_kib))
        return;
    cpu_cli();
    while (*written > quota_bytes(t0, rate_kib)) {
        cpu_sti_hlt();
        cpu_cli();
    }
    cpu_sti();
}

int guest_main(struct boot_info *bi)
{
    uint32_t mib, passes, rate;
    if (cmdline_get_u32(bi->cmdline, "mib", DEFAULT_MIB, &mib) < 0 || mib == 0)
        guest_panic(EXIT_BAD_CONFIG, "dirtier: mib= must be a positive integer");
    if (cmdline_get_u32(bi->cmdline, "passes", DEFAULT_PASSES, &passes) < 0 || passes == 0)
        guest_panic(EXIT_BAD_CONFIG, "dirtier: passes= must be a positive integer");
    if (cmdline_get_u32(bi->cmdline, "rate", 0, &rate) < 0)
        guest_panic(EXIT_BAD_CONFIG, "dirtier: rate= must be a number of KiB per second");
    if (!(bi->flags & MBI_FLAG_MEMORY))
        guest_panic(EXIT_BAD_BOOT, "dirtier: no memory size from the loader");
    uint64_t ram_end = 0x100000ull + (uint64_t)bi->mem_upper * 1024;
    uint64_t ws_bytes = (uint64_t)mib << 20;
    if (WS_PHYS + ws_bytes > ram_end || WS_PHYS + ws_bytes > (1ull << 32))
        guest_panic(EXIT_BAD_CONFIG, "dirtier: mib=%u does not fit: %llu KiB of RAM above 8 MiB", mib,
                    (unsigned long long)(ram_end > WS_PHYS ? (ram_end - WS_PHYS) >> 10 : 0));
    if ((uint64_t)(uintptr_t)__kernel_end - KERNEL_VMA > WS_PHYS)
        guest_panic(EXIT_CHECK_FAIL, "dirtier: kernel image overlaps the working set");

    volatile uint64_t *ws = (volatile uint64_t *)(uintptr_t)WS_PHYS; /* identity mapped */
    uint64_t words = ws_bytes / 8;
    uint64_t t0 = 0, written = 0;
    if (rate > 0) {
        pic_init();
        pit_start(1000, 0);
        t0 = pit_ticks;
        kprintf("dirtier: working set %u MiB, %u passes, %u KiB/s\n", mib, passes, rate);
    } else {
        kprintf("dirtier: working set %u MiB, %u passes\n", mib, passes);
    }
    for (uint32_t p = 0; p < passes; p++) {
        if (p == 0) {
            for (uint64_t i = 0; i < words; i++) {
                pace(&written, t0, rate);
                ws[i] = mix(i, 0);
            }
        } else {
            for (uint64_t i = 0; i < words; i++) {
                pace(&written, t0, rate);
                ws[i] = rotl64(ws[i], 13) ^ mix(i, p);
            }
        }
        kprintf("dirtier: pass %u/%u done\n", p + 1, passes);
    }
    uint64_t h = 0xCBF29CE484222325ull;
    for (uint64_t i = 0; i < words; i++)
        h = (rotl64(h, 5) ^ ws[i]) * 0x100000001B3ull;
    kprintf("dirtier: wrote %llu MiB in total\n", (unsigned long long)mib * passes);
    kprintf("dirtier: checksum %#018llx\n", (unsigned long long)h);
    if (rate > 0)
        pit_stop();
    return EXIT_OK;
}
