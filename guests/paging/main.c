/*
 * paging: builds its own 4-level page tables (no identity map), checks
 * non-identity aliases and the high-half mapping, takes a deliberate #PF and
 * resolves it by mapping the page, then runs ring-3 code entered with SYSRET
 * that calls back with SYSCALL.
 */
#include "x86_64.h"

#define PTE_P 0x001ull
#define PTE_W 0x002ull
#define PTE_U 0x004ull
#define PTE_ADDR 0x000FFFFFFFFFF000ull

#define HIGH_MAP_BYTES (4ull << 20)          /* high half: physical 0..4 MiB, 4 KiB pages */
#define ALIAS_A_VA 0x0000000040000000ull      /* two aliases of one physical page */
#define ALIAS_B_VA 0x00007FFFFFFFF000ull
#define DEMAND_VA 0x0000000050000000ull       /* unmapped until the #PF handler maps it */
#define USER_CODE_VA 0x0000000000400000ull
#define USER_STACK_VA 0x0000000000800000ull

#define SYS_WRITE 1
#define SYS_REPORT 2
#define SYS_EXIT 3

#define POOL_PAGES 32
static uint64_t pool[POOL_PAGES][512] __attribute__((aligned(4096)));
static unsigned pool_used;
static uint8_t alias_page[4096] __attribute__((aligned(4096)));
static uint8_t demand_page[4096] __attribute__((aligned(4096)));
static uint8_t user_stack_page[4096] __attribute__((aligned(4096)));
static uint64_t *pml4;

/* The high-half test variable. The link script puts .fixed first in the high
 * half, so its address is fixed: 0xFFFFFFFF80110000 (physical 0x110000). */
#define HH_TEST_VAR_VA 0xFFFFFFFF80110000ull
__attribute__((section(".fixed"), aligned(4096))) volatile uint64_t hh_test_var = 0x4649524D414D454Eull; /* "FIRMAMEN" */

extern char user_page_start[], user_page_end[], user_entry[], user_probe[];
extern char syscall_entry[];
uint64_t enter_user(uint64_t rip, uint64_t rsp, uint64_t arg);
__attribute__((noreturn)) void user_return(uint64_t value);

static volatile unsigned kernel_faults, user_faults;
static volatile uint64_t kernel_fault_cr2, kernel_fault_err, user_fault_err;

static uint64_t phys_of(const volatile void *p) { return (uint64_t)(uintptr_t)p - KERNEL_VMA; }
static uint64_t *table_at(uint64_t pa) { return (uint64_t *)(uintptr_t)(pa + KERNEL_VMA); }

static uint64_t *alloc_table(void)
{
    if (pool_used == POOL_PAGES)
        guest_panic(EXIT_CHECK_FAIL, "paging: page-table pool exhausted");
    uint64_t *t = pool[pool_used++];
    memset(t, 0, 4096);
    return t;
}

static void map_page(uint64_t va, uint64_t pa, uint64_t flags)
{
    uint64_t *t = pml4;
    for (int level = 3; level >= 1; level--) {
        unsigned idx = (va >> (12 + 9 * level)) & 511;
        if (!(t[idx] & PTE_P))
            t[idx] = phys_of(alloc_table()) | PTE_P | PTE_W;
        t[idx] |= flags & PTE_U; /* user pages need U at every level */
        t = table_at(t[idx] & PTE_ADDR);
    }
    t[(va >> 12) & 511] = (pa & PTE_ADDR) | flags | PTE_P;
}

/* Software walk of the current tables; returns the physical address or ~0. */
static uint64_t walk(uint64_t va, unsigned idx_out[4])
{
    uint64_t *t = table_at(read_cr3() & PTE_ADDR);
    for (int level = 3; level >= 0; level--) {
        unsigned idx = (va >> (12 + 9 * level)) & 511;
        idx_out[3 - level] = idx;
        uint64_t e = t[idx];
        if (!(e & PTE_P))
            return ~0ull;
        if (level == 0)
            return (e & PTE_ADDR) | (va & 0xFFF);
        t = table_at(e & PTE_ADDR);
    }
    return ~0ull;
}

static void page_fault(struct intr_frame *f)
{
    uint64_t cr2 = read_cr2();
    if ((f->cs & 3) == 0) {
        if (cr2 != DEMAND_VA || kernel_faults != 0)
            guest_panic(EXIT_EXCEPTION, "paging: unexpected kernel #PF cr2=%#llx err=%#llx rip=%#llx",
                        (unsigned long long)cr2, (unsigned long long)f->error_code, (unsigned long long)f->rip);
        kernel_fault_cr2 = cr2;
        kernel_fault_err = f->error_code;
        map_page(DEMAND_VA, phys_of(demand_page), PTE_W);
        invlpg(DEMAND_VA);
        kernel_faults++;
        return; /* the faulting store is restarted */
    }
    uint64_t probe_rip = USER_CODE_VA + (uint64_t)(user_probe - user_page_start);
    if (f->rip != probe_rip || cr2 != (uint64_t)(uintptr_t)&hh_test_var || user_faults != 0)
        guest_panic(EXIT_EXCEPTION, "paging: unexpected user #PF cr2=%#llx err=%#llx rip=%#llx", (unsigned long long)cr2,
                    (unsigned long long)f->error_code, (unsigned long long)f->rip);
    user_fault_err = f->error_code;
    user_faults++;
    f->rip += 3;       /* skip "mov (%rbx), %rax" */
    f->rax = 0xDEAD;
}

uint64_t syscall_dispatch(uint64_t a0, uint64_t a1, uint64_t a2, uint64_t nr)
{
    switch (nr) {
    case SYS_WRITE: {
        /* a0 = user CS, a1 = user pointer, a2 = length (all from ring 3) */
        if (a2 > 64 || a1 < USER_CODE_VA || a1 + a2 > USER_CODE_VA + 4096)
            guest_panic(EXIT_CHECK_FAIL, "paging: bad SYS_WRITE buffer");
        kprintf("paging: ring 3 (CPL=%llu) says via SYSCALL: ", (unsigned long long)(a0 & 3));
        kwrite((const char *)(uintptr_t)a1, (size_t)a2);
        kputs("\n");
        CHECK((a0 & 3) == 3, "paging: user code did not run at CPL 3");
        return 0;
    }
    case SYS_REPORT:
        kprintf("paging: ring 3 read of a supervisor page: #PF err=%#llx, %u fault(s), value %#llx\n",
                (unsigned long long)user_fault_err, user_faults, (unsigned long long)a0);
        CHECK(user_faults == 1 && user_fault_err == 0x5 && a0 == 0xDEAD, "paging: user protection check failed");
        return 0;
    case SYS_EXIT:
        user_return(a0);
    default:
        guest_panic(EXIT_CHECK_FAIL, "paging: unknown syscall %llu", (unsigned long long)nr);
    }
}

int guest_main(struct boot_info *bi)
{
    (void)bi;
    kputs("paging: 64-bit long mode, kernel linked at 0xffffffff80000000\n");
    uint64_t kend = (uint64_t)(uintptr_t)__kernel_end - KERNEL_VMA;
    if (kend > HIGH_MAP_BYTES)
        guest_panic(EXIT_CHECK_FAIL, "paging: kernel image ends at %#llx, beyond the high-half map", (unsigned long long)kend);

    /* Build new tables: high half (4 KiB pages) + aliases + user pages. */
    pml4 = alloc_table();
    for (uint64_t pa = 0; pa < HIGH_MAP_BYTES; pa += 4096)
        map_page(KERNEL_VMA + pa, pa, PTE_W);
    map_page(ALIAS_A_VA, phys_of(alias_page), PTE_W);
    map_page(ALIAS_B_VA, phys_of(alias_page), PTE_W);
    map_page(USER_CODE_VA, phys_of(user_page_start), PTE_U);
    map_page(USER_STACK_VA, phys_of(user_stack_page), PTE_U | PTE_W);
    write_cr3(phys_of(pml4));
    kprintf("paging: switched to own 4-level page tables (%u table pages, no identity map)\n", pool_used);

    /* Aliases: a write through one virtual page is seen through the others. */
    volatile uint64_t *a = (volatile uint64_t *)(uintptr_t)ALIAS_A_VA;
    volatile uint64_t *b = (volatile uint64_t *)(uintptr_t)ALIAS_B_VA;
    volatile uint64_t *k = (volatile uint64_t *)alias_page;
    a[3] = 0x0123456789ABCDEFull;
    CHECK(b[3] == 0x0123456789ABCDEFull && k[3] == 0x0123456789ABCDEFull, "paging: write via %#llx not seen via alias",
          (unsigned long long)ALIAS_A_VA);
    b[5] = 0xFEDCBA9876543210ull;
    CHECK(a[5] == 0xFEDCBA9876543210ull && k[5] == 0xFEDCBA9876543210ull, "paging: write via %#llx not seen via alias",
          (unsigned long long)ALIAS_B_VA);
    kprintf("paging: %#llx and %#llx alias one physical page: ok\n", (unsigned long long)ALIAS_A_VA,
            (unsigned long long)ALIAS_B_VA);

    /* High-half variable: print its (link-time fixed) address and walk it. */
    unsigned idx[4];
    uint64_t va = (uint64_t)(uintptr_t)&hh_test_var;
    CHECK(va == HH_TEST_VAR_VA, "paging: test variable linked at %#llx, not %#llx", (unsigned long long)va, HH_TEST_VAR_VA);
    uint64_t pa = walk(va, idx);
    kprintf("paging: high-half variable at %#llx (physical %#llx) = %#llx\n", (unsigned long long)va,
            (unsigned long long)phys_of(&hh_test_var), (unsigned long long)hh_test_var);
    kprintf("paging: walk %#llx: PML4[%u] PDPT[%u] PD[%u] PT[%u] -> %#llx\n", (unsigned long long)va, idx[0], idx[1], idx[2],
            idx[3], (unsigned long long)pa);
    CHECK(pa == phys_of(&hh_test_var), "paging: walk of the high-half variable gave %#llx", (unsigned long long)pa);

    /* Deliberate page fault: store to an unmapped page; the handler maps it. */
    isr_set_handler(14, page_fault);
    *(volatile uint64_t *)(uintptr_t)DEMAND_VA = 0x5A5A5A5A12345678ull;
    kprintf("paging: #PF at %#llx error code %#llx (write, not present), handler mapped the page, %u fault(s)\n",
            (unsigned long long)kernel_fault_cr2, (unsigned long long)kernel_fault_err, kernel_faults);
    CHECK(kernel_faults == 1 && kernel_fault_cr2 == DEMAND_VA && kernel_fault_err == 0x2, "paging: #PF check failed");
    CHECK(((volatile uint64_t *)demand_page)[0] == 0x5A5A5A5A12345678ull, "paging: restarted store did not land");
    kputs("paging: restarted store landed in the new page: ok\n");

    /* Ring 3: SYSRET in, SYSCALL back. */
    wrmsr(MSR_EFER, rdmsr(MSR_EFER) | EFER_SCE);
    wrmsr(MSR_STAR, STAR_VALUE);
    wrmsr(MSR_LSTAR, (uint64_t)(uintptr_t)syscall_entry);
    wrmsr(MSR_SFMASK, 0x700); /* clear TF, IF, DF on SYSCALL */
    kputs("paging: entering ring 3 with SYSRET\n");
    uint64_t rc = enter_user(USER_CODE_VA + (uint64_t)(user_entry - user_page_start), USER_STACK_VA + 4096, va);
    kprintf("paging: back in ring 0, ring 3 exited with %llu\n", (unsigned long long)rc);
    CHECK(rc == 42, "paging: wrong exit value from ring 3");
    kputs("paging: all checks passed\n");
    return EXIT_OK;
}
