/*
 * hostile: canonical-address checks in kernel mode (SDM Vol. 2/4), beyond
 * what QEMU's TCG does:
 * - WRMSR of a non-canonical address to FS_BASE, GS_BASE or KERNEL_GS_BASE
 *   is #GP(0) and leaves the MSR as it was (QEMU takes the value);
 * - a memory access through SS to a non-canonical address (an RBP- or
 *   RSP-based operand, an SS: override) is #SS(0), where a DS one is #GP(0)
 *   (QEMU raises #GP for both).
 * Each probe resumes at R15; the handler records vector and error code.
 */
#include "x86_64.h"

#define MSR_FS_BASE 0xC0000100u
#define MSR_GS_BASE 0xC0000101u
#define MSR_KERNEL_GS_BASE 0xC0000102u
#define NON_CANONICAL 0x0000800000001000ull

static volatile uint64_t fault_vector, fault_error;
static volatile unsigned faults;

static void on_probe_fault(struct intr_frame *f)
{
    if (!f->r15)
        guest_panic(EXIT_EXCEPTION, "hostile: unexpected fault %llu rip=%#llx", (unsigned long long)f->vector, (unsigned long long)f->rip);
    fault_vector = f->vector;
    fault_error = f->error_code;
    faults++;
    f->rip = f->r15;
}

static const char *vector_name(uint64_t v)
{
    return v == 13 ? "#GP" : v == 12 ? "#SS" : v == ~0ull ? "no fault" : "other fault";
}

/* WRMSR `msr` <- NON_CANONICAL: 1 if it faulted #GP(0) and the MSR kept its value. */
static unsigned wrmsr_refused(uint32_t msr, const char *name)
{
    uint64_t before = rdmsr(msr);
    fault_vector = ~0ull;
    __asm__ volatile("leaq 1f(%%rip), %%r15\n\t"
                     "wrmsr\n"
                     "1:\n\t"
                     "xorl %%r15d, %%r15d" ::"c"(msr), "a"((uint32_t)NON_CANONICAL), "d"((uint32_t)(NON_CANONICAL >> 32))
                     : "r15", "memory");
    bool kept = rdmsr(msr) == before;
    kprintf("hostile: WRMSR %s 0x800000001000: %s(%llu), %s unchanged: %s\n", name, vector_name(fault_vector), (unsigned long long)fault_error, name,
            kept ? "yes" : "no");
    return fault_vector == 13 && fault_error == 0 && kept;
}

/* Returns how many probes went wrong. */
unsigned canonical_probes(void)
{
    unsigned wrong = 0;
    isr_set_handler(12, on_probe_fault);
    isr_set_handler(13, on_probe_fault);
    wrong += !wrmsr_refused(MSR_FS_BASE, "FS_BASE");
    wrong += !wrmsr_refused(MSR_GS_BASE, "GS_BASE");
    wrong += !wrmsr_refused(MSR_KERNEL_GS_BASE, "KERNEL_GS_BASE");
    /* A canonical value still goes in. */
    uint64_t fs = rdmsr(MSR_FS_BASE);
    wrmsr(MSR_FS_BASE, 0xFFFF800000002000ull);
    kprintf("hostile: WRMSR FS_BASE 0xffff800000002000: %s\n", rdmsr(MSR_FS_BASE) == 0xFFFF800000002000ull ? "taken" : "lost");
    wrong += rdmsr(MSR_FS_BASE) != 0xFFFF800000002000ull;
    wrmsr(MSR_FS_BASE, fs);

    /* [RBP+8]: the SS segment. */
    fault_vector = ~0ull;
    __asm__ volatile("pushq %%rbp\n\t"
                     "movq %0, %%rbp\n\t"
                     "leaq 1f(%%rip), %%r15\n\t"
                     "movq 8(%%rbp), %%rax\n"
                     "1:\n\t"
                     "popq %%rbp\n\t"
                     "xorl %%r15d, %%r15d" ::"r"(NON_CANONICAL)
                     : "rax", "r15", "memory");
    uint64_t rbp_vector = fault_vector, rbp_error = fault_error;
    kprintf("hostile: read at non-canonical [rbp+8]: %s(%llu)\n", vector_name(rbp_vector), (unsigned long long)rbp_error);
    wrong += rbp_vector != 12 || rbp_error != 0;

    /* SS: override on an RAX-based operand. */
    fault_vector = ~0ull;
    __asm__ volatile("leaq 1f(%%rip), %%r15\n\t"
                     "movq %%ss:(%0), %%rax\n"
                     "1:\n\t"
                     "xorl %%r15d, %%r15d" ::"r"(NON_CANONICAL)
                     : "rax", "r15", "memory");
    kprintf("hostile: read at non-canonical ss:[rax]: %s(%llu)\n", vector_name(fault_vector), (unsigned long long)fault_error);
    wrong += fault_vector != 12 || fault_error != 0;

    /* [R13+8] is encoded like [RBP+8] but for REX.B: DS, #GP. */
    {
        uint64_t v, e;
        fault_vector = ~0ull;
        register uint64_t r13 __asm__("r13") = NON_CANONICAL;
        __asm__ volatile("leaq 1f(%%rip), %%r15\n\t"
                         "movq 8(%%r13), %%rax\n"
                         "1:\n\t"
                         "xorl %%r15d, %%r15d" ::"r"(r13)
                         : "rax", "r15", "memory");
        v = fault_vector;
        e = fault_error;
        kprintf("hostile: read at non-canonical [r13+8]: %s(%llu)\n", vector_name(v), (unsigned long long)e);
        wrong += v != 13 || e != 0;
    }
    isr_set_handler(12, 0);
    isr_set_handler(13, 0);
    return wrong;
}
