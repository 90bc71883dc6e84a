/*
 * clone: the linked-clone guest (docs/vm-state.md, "Linked clones").
 *
 * 1. Fills a "shared" range (physical 2 MiB up to the end of RAM) with a
 *    deterministic pattern, prints its checksum.
 * 2. Moves its page tables and stack into the private writable range, so that
 *    after the checkpoint it writes nothing outside that range (with EPT A/D,
 *    every guest page-walk access counts as a write, so tables in shared
 *    memory would be copied in every clone). Prints "ready".
 * 3. CHECKPOINT hypercall: the host takes its snapshot here (the base image
 *    every clone maps copy-on-write).
 * 4. CLONE_INDEX hypercall: which clone this is (negative: not a clone, the
 *    base run itself, which then uses index 0).
 * 5. Writes a pattern derived from the index into the private pattern area,
 *    verifies it, re-computes the shared checksum and prints both; exits
 *    through isa-debug-exit (0, or 1 when a check failed).
 *
 * Private writable range: 0x1EA000 + 88 KiB = page tables (4 pages), stack
 * (2 pages), pattern area 0x1F0000 + 64 KiB.
 * Needs the Firmament hypervisor (VMCALL); under QEMU it stops with #UD.
 */
#include "x86_64.h"

#define SHARED_PHYS 0x200000ull
#define PRIVATE_PHYS 0x1EA000ull
#define TABLES_PHYS PRIVATE_PHYS            /* PML4, PDPT low, PDPT high, PD */
#define STACK_TOP_PHYS 0x1F0000ull          /* 8 KiB below the pattern area */
#define PATTERN_PHYS 0x1F0000ull
#define PATTERN_BYTES 0x10000ull

#define HC_CHECKPOINT 5u
#define HC_CLONE_INDEX 6u

static inline int64_t hypercall(uint64_t fn, uint64_t arg)
{
    uint64_t r;
    __asm__ volatile("vmcall" : "=a"(r) : "a"(fn), "b"(arg) : "memory");
    return (int64_t)r;
}

static inline uint64_t rotl64(uint64_t v, unsigned s) { return (v << s) | (v >> (64 - s)); }

static inline uint64_t shared_word(uint64_t i) { return (i + 1) * 0x9E3779B97F4A7C15ull; }

static inline uint64_t private_word(uint64_t i, uint64_t index)
{
    return (i + 1) * 0xC2B2AE3D27D4EB4Full ^ (index + 1) * 0x165667B19E3779F9ull;
}

static uint64_t checksum(volatile const uint64_t *p, uint64_t words)
{
    uint64_t h = 0xCBF29CE484222325ull;
    for (uint64_t i = 0; i < words; i++)
        h = (rotl64(h, 5) ^ p[i]) * 0x100000001B3ull;
    return h;
}

/* Written before the checkpoint only (they live in shared memory). */
static uint64_t shared_words;
static uint64_t shared_before;

/* Identity map of 0..1 GiB and the kernel's high half, both through one PD of 2 MiB pages. */
static void build_private_tables(void)
{
    volatile uint64_t *pml4 = (volatile uint64_t *)(uintptr_t)TABLES_PHYS;
    volatile uint64_t *pdpt_lo = pml4 + 512, *pdpt_hi = pml4 + 1024, *pd = pml4 + 1536;
    for (unsigned i = 0; i < 4 * 512; i++)
        pml4[i] = 0;
    for (uint64_t k = 0; k < 512; k++)
        pd[k] = k << 21 | 0x83; /* P | RW | PS */
    pdpt_lo[0] = (TABLES_PHYS + 0x3000) | 3;
    pdpt_hi[510] = (TABLES_PHYS + 0x3000) | 3;
    pml4[0] = (TABLES_PHYS + 0x1000) | 3;
    pml4[511] = (TABLES_PHYS + 0x2000) | 3;
    write_cr3(TABLES_PHYS);
}

__attribute__((noreturn)) static void after_checkpoint(void)
{
    kprintf("clone: ready\n");
    hypercall(HC_CHECKPOINT, 0);

    int64_t idx = hypercall(HC_CLONE_INDEX, 0);
    uint64_t index = idx < 0 ? 0 : (uint64_t)idx;
    volatile uint64_t *priv = (volatile uint64_t *)(uintptr_t)PATTERN_PHYS;
    uint64_t words = PATTERN_BYTES / 8;
    for (uint64_t i = 0; i < words; i++)
        priv[i] = private_word(i, index);
    for (uint64_t i = 0; i < words; i++)
        CHECK(priv[i] == private_word(i, index), "clone %lld: private word %llu reads %#llx, wrote %#llx", (long long)idx,
              (unsigned long long)i, (unsigned long long)priv[i], (unsigned long long)private_word(i, index));
    volatile const uint64_t *shared = (volatile const uint64_t *)(uintptr_t)SHARED_PHYS;
    uint64_t after = checksum(shared, shared_words);
    kprintf("clone %lld: private pattern ok, private checksum %#018llx, shared checksum %#018llx\n", (long long)idx,
            (unsigned long long)checksum(priv, words), (unsigned long long)after);
    CHECK(after == shared_before, "clone %lld: shared checksum changed from %#018llx", (long long)idx, (unsigned long long)shared_before);
    guest_exit(EXIT_OK);
}

int guest_main(struct boot_info *bi)
{
    if (!(bi->flags & MBI_FLAG_MEMORY))
        guest_panic(EXIT_BAD_BOOT, "clone: no memory size from the loader");
    uint64_t ram_end = 0x100000ull + (uint64_t)bi->mem_upper * 1024;
    if (ram_end <= SHARED_PHYS + 0x100000 || ram_end > (1ull << 30))
        guest_panic(EXIT_BAD_CONFIG, "clone: needs 3 MiB to 1 GiB of RAM, has %llu KiB", (unsigned long long)(ram_end >> 10));
    if ((uint64_t)(uintptr_t)__kernel_end - KERNEL_VMA > PRIVATE_PHYS)
        guest_panic(EXIT_CHECK_FAIL, "clone: kernel image overlaps the private range");

    volatile uint64_t *shared = (volatile uint64_t *)(uintptr_t)SHARED_PHYS; /* identity mapped */
    shared_words = (ram_end - SHARED_PHYS) / 8;
    for (uint64_t i = 0; i < shared_words; i++)
        shared[i] = shared_word(i);
    shared_before = checksum(shared, shared_words);
    kprintf("clone: shared range 0x%llx+%llu KiB checksum %#018llx\n", (unsigned long long)SHARED_PHYS,
            (unsigned long long)(shared_words * 8 / 1024), (unsigned long long)shared_before);
    kprintf("clone: private range 0x%llx+%llu KiB (page tables, stack, pattern at 0x%llx+%llu KiB)\n", (unsigned long long)PRIVATE_PHYS,
            (unsigned long long)((PATTERN_PHYS + PATTERN_BYTES - PRIVATE_PHYS) >> 10), (unsigned long long)PATTERN_PHYS,
            (unsigned long long)(PATTERN_BYTES >> 10));
    build_private_tables();
    /* Continue on a stack in the private range (high-half address, 16-byte aligned minus the return slot). */
    __asm__ volatile("mov %0, %%rsp; jmp *%1" ::"r"(PHYS_TO_HIGH(STACK_TOP_PHYS) - 8), "r"(after_checkpoint) : "memory");
    __builtin_unreachable();
}
