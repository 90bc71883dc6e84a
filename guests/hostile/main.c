/*
 * hostile: a ring-3 program that tries what user code must not do, and the
 * kernel that checks the CPU refused it exactly as the SDM (and QEMU) says:
 * - port I/O at CPL > IOPL: #GP(0) unless every bit of the access is clear in
 *   the TSS I/O permission bitmap; a bitmap byte beyond the TSS limit, #GP(0);
 *   REP INS/OUTS fault before the first iteration;
 * - VMCALL (a hypercall that would shut the VM down), MONITOR, MWAIT: #UD.
 * Among the refused writes is one to isa-debug-exit: if it got through, the
 * VM would end with the wrong exit code.
 */
#include "x86_64.h"

#define PTE_P 0x001ull
#define PTE_U 0x004ull
#define PTE_PS 0x080ull
#define PTE_ADDR 0x000FFFFFFFFFF000ull

extern char user_phase_iopl0[], user_phase_iopl3[], user_phase_bitmap[], user_phase_bitmap2[];
uint64_t enter_user(uint64_t rip, uint64_t rsp, uint64_t rflags);
__attribute__((noreturn)) void user_return(void);
unsigned canonical_probes(void);

static uint8_t user_stack[8192] __attribute__((aligned(4096)));

#define MAX_PROBE 40
/* Per probe: 1 = ran, else 0x80000000 | vector << 16 | error code. */
static volatile uint32_t result[MAX_PROBE];
static volatile uint64_t rcx_at_fault[MAX_PROBE];

static void on_fault(struct intr_frame *f)
{
    if ((f->cs & 3) != 3)
        guest_panic(EXIT_EXCEPTION, "hostile: kernel fault vector %llu rip=%#llx", (unsigned long long)f->vector,
                    (unsigned long long)f->rip);
    uint64_t id = f->r14;
    if (id < MAX_PROBE) {
        result[id] = 0x80000000u | (uint32_t)f->vector << 16 | (uint32_t)(f->error_code & 0xffff);
        rcx_at_fault[id] = f->rcx;
    }
    f->rip = f->r15; /* resume after the probe */
}

/* Kernel-mode probes of reserved page-table bits: a #PF with RSVD, resumed at R15. */
static volatile uint64_t pf_err, pf_cr2;
static volatile unsigned pf_count;

static void on_pf(struct intr_frame *f)
{
    if (!f->r15)
        guest_panic(EXIT_EXCEPTION, "hostile: unexpected #PF error=%#llx rip=%#llx cr2=%#llx", (unsigned long long)f->error_code,
                    (unsigned long long)f->rip, (unsigned long long)read_cr2());
    pf_err = f->error_code;
    pf_cr2 = read_cr2();
    pf_count++;
    f->rip = f->r15;
}

/* Reads `va` through a 2 MiB identity-map slot set to `pde`; returns the #PF error code, or ~0 if none. */
static uint64_t probe_pde(uint64_t va, uint64_t pde)
{
    uint64_t *pml4 = (uint64_t *)(uintptr_t)PHYS_TO_HIGH(read_cr3() & PTE_ADDR);
    uint64_t *pdpt = (uint64_t *)(uintptr_t)PHYS_TO_HIGH(pml4[0] & PTE_ADDR);
    uint64_t *pd = (uint64_t *)(uintptr_t)PHYS_TO_HIGH(pdpt[va >> 30] & PTE_ADDR);
    uint64_t saved = pd[(va >> 21) & 511];
    unsigned before = pf_count;
    pd[(va >> 21) & 511] = pde;
    invlpg(va);
    uint64_t value;
    __asm__ volatile("leaq 1f(%%rip), %%r15\n\t"
                     "movq (%1), %0\n"
                     "1:\n\t"
                     "xorl %%r15d, %%r15d"
                     : "=&r"(value)
                     : "r"(va)
                     : "r15", "memory");
    (void)value;
    pd[(va >> 21) & 511] = saved;
    invlpg(va);
    if (pf_count == before)
        return ~0ull;
    CHECK(pf_cr2 == va, "hostile: #PF CR2 %#llx, expected %#llx", (unsigned long long)pf_cr2, (unsigned long long)va);
    return pf_err;
}

/* ---- debug registers (kernel mode) ---- */
extern char bp_target[];
void bp_func(void);
static volatile unsigned db_count;
static volatile uint64_t db_rip, db_dr6;

#define RFLAGS_RF (1ull << 16)

static inline uint64_t read_dr6(void) { uint64_t v; __asm__ volatile("mov %%dr6, %0" : "=r"(v)); return v; }
static inline uint64_t read_dr7(void) { uint64_t v; __asm__ volatile("mov %%dr7, %0" : "=r"(v)); return v; }
static inline void write_dr0(uint64_t v) { __asm__ volatile("mov %0, %%dr0" ::"r"(v)); }
static inline void write_dr6(uint64_t v) { __asm__ volatile("mov %0, %%dr6" ::"r"(v)); }
static inline void write_dr7(uint64_t v) { __asm__ volatile("mov %0, %%dr7" ::"r"(v)); }

static void on_db(struct intr_frame *f)
{
    db_count++;
    db_rip = f->rip;
    db_dr6 = read_dr6();
    write_dr6(0);
    f->rflags |= RFLAGS_RF; /* an instruction breakpoint is a fault: resume without hitting it again */
}

/* A fault a kernel probe expects (R15 = where to resume): count it, remember the vector and error code. */
static volatile unsigned gp_count;
static volatile uint64_t kfault_vector, kfault_error;
static void on_kernel_gp(struct intr_frame *f)
{
    if (!f->r15)
        guest_panic(EXIT_EXCEPTION, "hostile: unexpected kernel fault vector %llu rip=%#llx", (unsigned long long)f->vector,
                    (unsigned long long)f->rip);
    gp_count++;
    kfault_vector = f->vector;
    kfault_error = f->error_code;
    f->rip = f->r15;
}

/* Kernel-mode probes of checks on instructions we emulate: a non-canonical access is #GP(0), not
 * #PF; SYSCALL with EFER.SCE clear is #UD (Unicorn's SYSCALL hook bypasses QEMU's check). */
static unsigned kernel_probes(void)
{
    unsigned wrong = 0;
    isr_set_handler(13, on_kernel_gp);
    isr_set_handler(6, on_kernel_gp);
    kfault_vector = ~0ull;
    __asm__ volatile("leaq 1f(%%rip), %%r15\n\t"
                     "movq (%0), %%rax\n"
                     "1:\n\t"
                     "xorl %%r15d, %%r15d" ::"r"(0x0000800000001000ull)
                     : "rax", "r15", "memory");
    kprintf("hostile: read at non-canonical 0x800000001000: %s(%llu)\n", kfault_vector == 13 ? "#GP" : "other fault",
            (unsigned long long)kfault_error);
    wrong += kfault_vector != 13 || kfault_error != 0;
    wrmsr(MSR_EFER, rdmsr(MSR_EFER) & ~(uint64_t)EFER_SCE);
    kfault_vector = ~0ull;
    __asm__ volatile("leaq 1f(%%rip), %%r15\n\t"
                     "syscall\n"
                     "1:\n\t"
                     "xorl %%r15d, %%r15d" ::: "rcx", "r11", "r15", "memory");
    kprintf("hostile: SYSCALL with EFER.SCE clear: %s\n", kfault_vector == 6 ? "#UD" : "no #UD");
    wrong += kfault_vector != 6;
    isr_set_handler(13, on_fault);
    isr_set_handler(6, on_fault);
    return wrong;
}

static unsigned debug_register_probes(bool strict)
{
    unsigned wrong = 0;
    isr_set_handler(1, on_db);
    write_dr0((uint64_t)(uintptr_t)bp_target);
    write_dr7(0x1); /* L0, instruction breakpoint */
    bp_func();
    bp_func();
    unsigned armed = db_count;
    write_dr7(0);
    bp_func();
    kprintf("hostile: instruction breakpoint in DR0: %u #DB while armed, %u after DR7 cleared, at the breakpoint: %s, DR6 B0: %s\n",
            armed, db_count - armed, db_rip == (uint64_t)(uintptr_t)bp_target ? "yes" : "no", db_dr6 & 1 ? "set" : "clear");
    wrong += armed != 2 || db_count != 2 || db_rip != (uint64_t)(uintptr_t)bp_target || !(db_dr6 & 1);
    uint64_t dr6 = 0, dr4 = 0;
    write_dr6(0);
    __asm__ volatile("mov %%dr4, %0" : "=r"(dr4)); /* CR4.DE = 0: DR4 is DR6 */
    dr6 = read_dr6();
    kprintf("hostile: DR4 reads DR6 (CR4.DE clear): %s\n", dr4 == dr6 ? "yes" : "no");
    wrong += dr4 != dr6;
    if (strict) {
        /* Firmament only (QEMU 7.2 implements none of these): DR7.GD, refused data breakpoints, canonical LSTAR. */
        unsigned before = db_count;
        write_dr7(1ull << 13);           /* GD: the next MOV DR raises #DB with DR6.BD */
        uint64_t dr7 = read_dr7();        /* #DB, then re-executed with GD clear */
        kprintf("hostile: DR7.GD: %u #DB, DR6.BD %s, GD after: %s\n", db_count - before, db_dr6 & (1u << 13) ? "set" : "clear",
                dr7 & (1u << 13) ? "set" : "clear");
        wrong += db_count - before != 1 || !(db_dr6 & (1u << 13)) || (dr7 & (1u << 13));
        isr_set_handler(13, on_kernel_gp);
        unsigned gps = gp_count;
        write_dr0((uint64_t)(uintptr_t)&db_count);
        __asm__ volatile("leaq 1f(%%rip), %%r15\n\t"
                         "mov %0, %%dr7\n"
                         "1:\n\t"
                         "xorl %%r15d, %%r15d" ::"r"((uint64_t)0x000d0001) /* L0, write, 4 bytes */
                         : "r15", "memory");
        kprintf("hostile: data breakpoint in DR7: %s, DR7 now %#llx\n", gp_count - gps == 1 ? "#GP(0)" : "accepted",
                (unsigned long long)read_dr7());
        wrong += gp_count - gps != 1 || read_dr7() != 0x400;
        /* A non-canonical LSTAR is #GP(0) on hardware; QEMU 7.2 takes it. */
        uint64_t lstar = rdmsr(MSR_LSTAR);
        gps = gp_count;
        __asm__ volatile("leaq 1f(%%rip), %%r15\n\t"
                         "wrmsr\n"
                         "1:\n\t"
                         "xorl %%r15d, %%r15d" ::"c"(MSR_LSTAR), "a"(0u), "d"(0x8000u)
                         : "r15", "memory");
        kprintf("hostile: WRMSR LSTAR 0x800000000000: %s, LSTAR unchanged: %s\n", gp_count - gps == 1 ? "#GP(0)" : "accepted",
                rdmsr(MSR_LSTAR) == lstar ? "yes" : "no");
        wrong += gp_count - gps != 1 || rdmsr(MSR_LSTAR) != lstar;
        isr_set_handler(13, on_fault);
    }
    isr_set_handler(1, 0);
    return wrong;
}

/* Reads one byte from each of `n` 2 MiB guest-physical regions from 4 GiB up, through one PD slot;
 * returns how many read the same value as the first (nothing is there: all of them). */
static uint32_t touch_unbacked_regions(uint32_t n)
{
    uint64_t *pml4 = (uint64_t *)(uintptr_t)PHYS_TO_HIGH(read_cr3() & PTE_ADDR);
    uint64_t *pdpt = (uint64_t *)(uintptr_t)PHYS_TO_HIGH(pml4[0] & PTE_ADDR);
    const uint64_t va = 0x3FE00000ull;
    uint64_t *slot = &((uint64_t *)(uintptr_t)PHYS_TO_HIGH(pdpt[0] & PTE_ADDR))[(va >> 21) & 511];
    uint64_t saved = *slot;
    uint8_t first = 0;
    uint32_t same = 0;
    for (uint32_t i = 0; i < n; i++) {
        *slot = ((4ull << 30) + (uint64_t)i * (2ull << 20)) | 0x83;
        invlpg(va);
        uint8_t b = *(volatile uint8_t *)(uintptr_t)(va + (i % 512) * 4096);
        if (i == 0)
            first = b;
        same += b == first;
    }
    *slot = saved;
    invlpg(va);
    return same;
}

/* ---- stores into holes: dropped, the instruction completes ---- */
void hole_int(uint64_t rsp);
void hole_handler(void);
extern volatile uint32_t hole_handler_ran;

static unsigned hole_probes(void)
{
    unsigned wrong = 0;
    uint64_t *pml4 = (uint64_t *)(uintptr_t)PHYS_TO_HIGH(read_cr3() & PTE_ADDR);
    uint64_t *pdpt = (uint64_t *)(uintptr_t)PHYS_TO_HIGH(pml4[0] & PTE_ADDR);
    uint64_t *pd = (uint64_t *)(uintptr_t)PHYS_TO_HIGH(pdpt[0] & PTE_ADDR);
    /* VA 0x3FA00000: guest RAM at 8 MiB; 0x3FC00000: a hole (GPA 4 GiB); 0x3FE00000: RAM at 10 MiB. */
    CHECK(HIGH_TO_PHYS(__kernel_end) <= (8ull << 20), "hostile: kernel image overlaps the RAM used by the hole probes");
    uint64_t saved[3] = { pd[509], pd[510], pd[511] };
    pd[509] = (8ull << 20) | 0x83;
    pd[510] = (4ull << 30) | 0x83;
    pd[511] = (10ull << 20) | 0x83;
    write_cr3(read_cr3());
    volatile uint32_t *ram_a = (volatile uint32_t *)(uintptr_t)0x3FA00000ull;
    volatile uint32_t *ram_b = (volatile uint32_t *)(uintptr_t)0x3FE00000ull;
    ram_a[(2u << 20) / 4 - 1] = 0;
    ram_b[0] = 0;
    uint64_t start = 0x3FC00000ull - 0x800, count = (0x800 + (2u << 20) + 0x800) / 4, rdi = start, rcx = count;
    __asm__ volatile("cld; rep stosl" : "+D"(rdi), "+c"(rcx) : "a"(0x5A5A5A5Au) : "memory");
    kprintf("hostile: rep stosd over 2 KiB RAM, a 2 MiB hole, 2 KiB RAM: RCX %llu, RDI advanced %#llx, RAM before and after the hole written: %s\n",
            (unsigned long long)rcx, (unsigned long long)(rdi - start),
            ram_a[(2u << 20) / 4 - 1] == 0x5A5A5A5Au && ram_b[0] == 0x5A5A5A5Au && ram_b[0x800 / 4 - 1] == 0x5A5A5A5Au ? "yes" : "no");
    wrong += rcx != 0 || rdi - start != count * 4 || ram_b[0x800 / 4 - 1] != 0x5A5A5A5Au;
    /* An interrupt delivered onto a stack in the hole: the frame is dropped, the handler runs. */
    idt_set_raw(0x81, hole_handler);
    hole_int(0x3FC00000ull + 0x10000);
    kprintf("hostile: INT 0x81 with the stack in a hole: handler ran %u time(s)\n", (unsigned)hole_handler_ran);
    wrong += hole_handler_ran != 1;
    /* PUSH, PUSHF and CALLs (direct, through a register, through memory) with RSP in the hole:
       the stores are dropped, RSP still moves and the calls reach their targets. */
    static volatile uint64_t call_slot;
    uint64_t moved, reached;
    __asm__ volatile(
        "pushfq; cli; mov %%rsp, %%r11\n\t"
        "mov %[hole], %%rsp\n\t"
        "xor %[reached], %[reached]\n\t"
        "pushq $1; push %%rax; pushfq\n\t"
        "call 1f\n\t"
        "jmp 9f\n"
        "1: inc %[reached]\n\t"
        "lea 2f(%%rip), %%rcx; call *%%rcx\n\t"
        "jmp 9f\n"
        "2: inc %[reached]\n\t"
        "lea 3f(%%rip), %%rcx; mov %%rcx, %[slot]; call *%[slot]\n\t"
        "jmp 9f\n"
        "3: inc %[reached]\n"
        "9: mov %[hole], %[moved]; sub %%rsp, %[moved]\n\t"
        "mov %%r11, %%rsp; popfq"
        : [moved] "=&r"(moved), [reached] "=&r"(reached), [slot] "+m"(call_slot)
        : [hole] "i"(0x3FC10000)
        : "rax", "rcx", "r11", "memory", "cc");
    kprintf("hostile: PUSH, PUSH, PUSHF, CALL, CALL reg, CALL [mem] with the stack in a hole: RSP moved by %llu, calls reached %llu of 3\n",
            (unsigned long long)moved, (unsigned long long)reached);
    wrong += moved != 48 || reached != 3;
    pd[509] = saved[0];
    pd[510] = saved[1];
    pd[511] = saved[2];
    write_cr3(read_cr3());
    return wrong;
}

static void on_user_done(struct intr_frame *f)
{
    (void)f;
    user_return();
}

/* U on every level of the identity map over [0, end): the user code and its stack live there. */
static void identity_map_user(uint64_t end)
{
    uint64_t *pml4 = (uint64_t *)(uintptr_t)PHYS_TO_HIGH(read_cr3() & PTE_ADDR);
    pml4[0] |= PTE_U;
    uint64_t *pdpt = (uint64_t *)(uintptr_t)PHYS_TO_HIGH(pml4[0] & PTE_ADDR);
    pdpt[0] |= PTE_U;
    uint64_t *pd = (uint64_t *)(uintptr_t)PHYS_TO_HIGH(pdpt[0] & PTE_ADDR);
    for (uint64_t pa = 0; pa < end; pa += 2ull << 20) {
        CHECK((pd[pa >> 21] & (PTE_P | PTE_PS)) == (PTE_P | PTE_PS), "hostile: identity map at %#llx is not a 2 MiB page",
              (unsigned long long)pa);
        pd[pa >> 21] |= PTE_U;
    }
    write_cr3(read_cr3());
}

struct probe {
    unsigned id;
    const char *what;
    uint32_t expect; /* as result[] */
};

#define GP0 (0x80000000u | 13u << 16)
#define UD (0x80000000u | 6u << 16)
#define RAN 1u

static const struct probe probes[] = {
    { 1, "IOPL 0: out 0x80", GP0 },
    { 2, "IOPL 0: in 0x21 (PIC mask)", GP0 },
    { 3, "IOPL 0: out 0xf4 (isa-debug-exit)", GP0 },
    { 4, "IOPL 0: rep insb from 0x80", GP0 },
    { 5, "IOPL 0: outsw to 0x80", GP0 },
    { 6, "vmcall (shutdown) at CPL 3", UD },
    { 7, "monitor at CPL 3", UD },
    { 8, "mwait at CPL 3", UD },
    { 10, "IOPL 3: out 0x80", RAN },
    { 11, "IOPL 3: in 0x3fd", RAN },
    { 12, "IOPL 3: vmcall at CPL 3", UD },
    { 20, "bitmap {0x80}: out byte 0x80", RAN },
    { 21, "bitmap {0x80}: out byte 0x81", GP0 },
    { 22, "bitmap {0x80}: out word 0x80", GP0 },
    { 23, "bitmap {0x80}: out word 0x7f", GP0 },
    { 24, "bitmap {0x80}: rep outsb to 0x80", RAN },
    { 25, "bitmap {0x80}: in 0x3fd (beyond the TSS limit)", GP0 },
    { 30, "bitmap {0x80,0x81}: out word 0x80", RAN },
    { 31, "bitmap {0x80,0x81}: out dword 0x80", GP0 },
    { 32, "bitmap {0x80,0x81}: in byte 0x81", RAN },
};

static void run_phase(char *entry, uint64_t rflags)
{
    enter_user(HIGH_TO_PHYS(entry), HIGH_TO_PHYS(user_stack + sizeof(user_stack)), rflags);
}

static void print_result(uint32_t r)
{
    if (r == RAN)
        kputs("ran");
    else
        kprintf("%s(%u)", (r >> 16 & 0xff) == 13 ? "#GP" : (r >> 16 & 0xff) == 6 ? "#UD" : "#?", r & 0xffff);
}

int guest_main(struct boot_info *bi)
{
    kputs("hostile: ring-3 probes of port I/O, VMCALL, MONITOR and MWAIT\n");
    identity_map_user(HIGH_TO_PHYS(__kernel_end));
    isr_set_handler(6, on_fault);
    isr_set_handler(13, on_fault);
    isr_set_handler(0x80, on_user_done);
    idt_set_user(0x80);

    for (unsigned i = 0; i < MAX_PROBE; i++)
        result[i] = RAN; /* the fault handler overwrites what faulted */
    run_phase(user_phase_iopl0, 0x002);
    run_phase(user_phase_iopl3, 0x3002);
    tss_allow_port(0x80, true);
    run_phase(user_phase_bitmap, 0x002);
    tss_allow_port(0x81, true);
    run_phase(user_phase_bitmap2, 0x002);

    unsigned n = sizeof(probes) / sizeof(probes[0]), right = 0;
    for (unsigned i = 0; i < n; i++) {
        const struct probe *p = &probes[i];
        uint32_t r = result[p->id];
        kprintf("hostile: %s: ", p->what);
        print_result(r);
        if (r != p->expect) {
            kputs(", expected ");
            print_result(p->expect);
        }
        kputs("\n");
        right += r == p->expect;
    }
    kprintf("hostile: rep insb faulted with RCX %llu (no iteration ran)\n", (unsigned long long)rcx_at_fault[4]);
    kprintf("hostile: %u of %u probes as the SDM says\n", right, n);
    unsigned wrong = n - right + (rcx_at_fault[4] != 4);

    /* Page-table entries naming memory above MAXPHYADDR, or a 2 MiB page with reserved low
     * address bits: #PF with RSVD, never a wild physical access. */
    uint32_t eax, ebx, ecx, edx;
    __asm__ volatile("cpuid" : "=a"(eax), "=b"(ebx), "=c"(ecx), "=d"(edx) : "a"(0x80000008u), "c"(0));
    unsigned maxphy = eax & 0xff;
    kprintf("hostile: MAXPHYADDR %u\n", maxphy);
    const uint64_t va = 0x3FE00000ull; /* the last 2 MiB slot of the first GiB: nothing of ours lives there */
    isr_set_handler(14, on_pf);
    static const struct {
        const char *what;
        uint64_t pde;
    } pdes[] = {
        { "2 MiB page at bit 45", (1ull << 45) | 0x83 },
        { "page table at bit 45", (1ull << 45) | 0x03 },
        { "2 MiB page at MAXPHYADDR", 0, },
        { "2 MiB page with bit 13 set", 0x3FE00000ull | (1ull << 13) | 0x83 },
        { "2 MiB page just below MAXPHYADDR, not present", 0x82 },
    };
    for (unsigned i = 0; i < sizeof(pdes) / sizeof(pdes[0]); i++) {
        uint64_t pde = i == 2 ? (1ull << maxphy) | 0x83 : i == 4 ? ((1ull << maxphy) - (2ull << 20)) | 0x82 : pdes[i].pde;
        uint64_t err = probe_pde(va, pde);
        kprintf("hostile: read through a %s: ", pdes[i].what);
        /* The SDM sets P with RSVD (error 0x9); QEMU 7.2 reports 0x8: print and check RSVD alone. */
        if (err == ~0ull)
            kputs("no fault\n");
        else if (err & 8)
            kprintf("#PF, reserved bit (error %s)\n", (err & ~1ull) == 8 ? "0x8 or 0x9" : "other bits set too");
        else
            kprintf("#PF error %#llx\n", (unsigned long long)err);
        wrong += i == 4 ? err != 0 : err == ~0ull || (err & ~1ull) != 8;
    }
    isr_set_handler(14, 0);
    const char *v;
    size_t vlen;
    wrong += debug_register_probes(cmdline_get(bi->cmdline, "strict", &v, &vlen));
    wrong += hole_probes();
    wrong += kernel_probes();
    uint32_t regions = 0;
    if (cmdline_get_u32(bi->cmdline, "regions", 0, &regions) < 0)
        guest_panic(EXIT_BAD_CONFIG, "hostile: bad regions= option");
    if (regions) {
        uint32_t same = touch_unbacked_regions(regions);
        kprintf("hostile: read %u unbacked 2 MiB regions above 4 GiB: %u read alike\n", regions, same);
        wrong += same != regions;
    }
    /* Firmament only (QEMU TCG checks neither): canonical FS/GS bases, #SS for SS accesses (canonical.c). */
    if (cmdline_get(bi->cmdline, "strict", &v, &vlen))
        wrong += canonical_probes();
    return wrong ? EXIT_CHECK_FAIL : EXIT_OK;
}
