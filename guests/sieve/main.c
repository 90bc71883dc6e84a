/*
 * sieve: a memory-bound guest. The sieve of Eratosthenes over a byte array of `mib` MiB
 * (physical 8 MiB upwards), `passes` times. Striking out multiples of a prime larger than a page
 * touches a new page on every store, so the working set (far larger than any TLB) is walked
 * page by page over and over: what kvm-unit-tests' `sieve` measures, without its allocator.
 * Prints the prime count below mib * 2^20 and a checksum of the primes, identical every pass.
 * Command line: mib=N (default 32), passes=P (default 2).
 */
#include "x86_64.h"

#define WS_PHYS 0x800000ull /* 8 MiB: above the kernel image */
#define DEFAULT_MIB 32u
#define DEFAULT_PASSES 2u

int guest_main(struct boot_info *bi)
{
    uint32_t mib, passes;
    if (cmdline_get_u32(bi->cmdline, "mib", DEFAULT_MIB, &mib) < 0 || mib == 0)
        guest_panic(EXIT_BAD_CONFIG, "sieve: mib= must be a positive integer");
    if (cmdline_get_u32(bi->cmdline, "passes", DEFAULT_PASSES, &passes) < 0 || passes == 0)
        guest_panic(EXIT_BAD_CONFIG, "sieve: passes= must be a positive integer");
    if (!(bi->flags & MBI_FLAG_MEMORY))
        guest_panic(EXIT_BAD_BOOT, "sieve: no memory size from the loader");
    uint64_t ram_end = 0x100000ull + (uint64_t)bi->mem_upper * 1024;
    uint64_t n = (uint64_t)mib << 20;
    if (WS_PHYS + n > ram_end || WS_PHYS + n > (1ull << 32))
        guest_panic(EXIT_BAD_CONFIG, "sieve: mib=%u does not fit: %llu KiB of RAM above 8 MiB", mib,
                    (unsigned long long)(ram_end > WS_PHYS ? (ram_end - WS_PHYS) >> 10 : 0));
    if ((uint64_t)(uintptr_t)__kernel_end - KERNEL_VMA > WS_PHYS)
        guest_panic(EXIT_CHECK_FAIL, "sieve: kernel image overlaps the working set");

    volatile uint8_t *composite = (volatile uint8_t *)(uintptr_t)WS_PHYS; /* identity mapped */
    kprintf("sieve: %u MiB, %u passes\n", mib, passes);
    uint64_t first_count = 0, first_sum = 0;
    for (uint32_t p = 0; p < passes; p++) {
        for (uint64_t i = 0; i < n; i++)
            composite[i] = 0;
        for (uint64_t i = 2; i * i < n; i++) {
            if (composite[i])
                continue;
            for (uint64_t j = i * i; j < n; j += i)
                composite[j] = 1;
        }
        uint64_t count = 0, sum = 0;
        for (uint64_t i = 2; i < n; i++) {
            if (!composite[i]) {
                count++;
                sum = (sum ^ i) * 0x100000001B3ull;
            }
        }
        if (p == 0) {
            first_count = count;
            first_sum = sum;
        } else {
            CHECK(count == first_count && sum == first_sum, "sieve: pass %u found %llu primes, pass 1 %llu", p + 1,
                  (unsigned long long)count, (unsigned long long)first_count);
        }
        kprintf("sieve: pass %u/%u: %llu primes below %llu, checksum %#018llx\n", p + 1, passes, (unsigned long long)count,
                (unsigned long long)n, (unsigned long long)sum);
    }
    return EXIT_OK;
}
