/*
 * function-runtime: the guest of the function service (docs/functions.md).
 *
 * Boots, moves its page tables and stacks into the private writable range,
 * announces READY (hypercall 16: the host snapshots it there and starts linked
 * clones of that snapshot), then serves invocations from the mailbox: each
 * one is a small static x86-64 ELF plus a request body. The ELF is loaded into
 * a fresh ring-3 address space (the function's container), run with the body
 * and an output buffer, and its response (or the reason it failed: a fault,
 * the time limit, a bad ELF, a bad syscall) goes back through RESPOND
 * (hypercall 18). Then the runtime waits (hypercall 17) for the next one.
 *
 * User code sees only its own pages: kernel memory is supervisor-only, so a
 * wild write faults; a 1 kHz PIT tick, on only while user code runs, stops an
 * endless loop at the invocation's limit. VMCALL, port I/O and HLT at CPL 3
 * fault too. Needs the Firmament hypervisor (VMCALL).
 */
#include "x86_64.h"
#include "abi.h"

#define PTE_P 0x001ull
#define PTE_W 0x002ull
#define PTE_U 0x004ull
#define PTE_A 0x020ull
#define PTE_D 0x040ull
#define PTE_PS 0x080ull

#define PIT_VECTOR (PIC_VECTOR_BASE + 0)
#define SYSCALL_VECTOR 0x80

void enter_user(uint64_t rip, uint64_t rsp, uint64_t a0, uint64_t a1, uint64_t a2, uint64_t a3);
__attribute__((noreturn)) void user_return(void);

/* Mutable runtime state: in the private range, after the saved kernel RSP (first quad, user.S). */
struct kstate {
    uint64_t kernel_ctx_rsp;
    uint64_t ticks;
    uint32_t last_seq;
    uint32_t nranges;
    struct { uint64_t va, len; bool writable; } ranges[16];
};

#define MB ((volatile struct fn_mailbox *)(uintptr_t)PHYS_TO_HIGH(FN_MAILBOX_PHYS))
#define KS ((struct kstate *)(uintptr_t)PHYS_TO_HIGH(FN_KSTATE_PHYS))
#define PHYS(p) ((uint8_t *)(uintptr_t)PHYS_TO_HIGH(p))

/* The PIT tick and the PIC mask, programmed directly: the library's versions keep state in .bss,
 * which a linked clone would copy on the first write. IRQ0 stays unmasked (from boot on): the PIT
 * alone starts and stops the tick, so an invocation costs 4 port writes (each an exit), not 6. */
static void tick_start(void)
{
    uint32_t divisor = PIT_HZ / 1000;
    outb(0x43, 0x34); /* channel 0, lobyte/hibyte, rate generator */
    outb(0x40, (uint8_t)divisor);
    outb(0x40, (uint8_t)(divisor >> 8));
}
static void tick_pause(void) { outb(0x21, 0xFB); }
static void tick_resume(void) { outb(0x21, 0xFA); }
static void tick_stop(void)
{
    outb(0x43, 0x30); /* mode 0 without a count: no further interrupts, no timer for the idle VM */
}

static inline int64_t hypercall(uint64_t fn, uint64_t arg)
{
    uint64_t r;
    __asm__ volatile("vmcall" : "=a"(r) : "a"(fn), "b"(arg) : "memory");
    return (int64_t)r;
}

/* ---- page tables ------------------------------------------------------------------------ */

#define T_PML4 ((volatile uint64_t *)(uintptr_t)PHYS_TO_HIGH(FN_TABLES_PHYS))
#define T_PDPT_HI (T_PML4 + 512)
#define T_PD_HI (T_PML4 + 1024)
#define T_UPDPT (T_PML4 + 1536)
#define T_UPD (T_PML4 + 2048)
#define T_UPT0 (T_PML4 + 2560) /* VA 0x400000-0x5FFFFF */
#define T_UPT1 (T_PML4 + 3072) /* VA 0x600000-0x7FFFFF */

/* Kernel: the high half only (physical 0..1 GiB, 2 MiB pages, supervisor). No identity map: user space owns PML4[0]. */
static void build_kernel_tables(void)
{
    for (unsigned i = 0; i < 7 * 512; i++)
        T_PML4[i] = 0;
    for (uint64_t k = 0; k < 512; k++)
        T_PD_HI[k] = k << 21 | PTE_P | PTE_W | PTE_PS;
    T_PDPT_HI[510] = (FN_TABLES_PHYS + 0x2000) | PTE_P | PTE_W;
    T_PML4[511] = (FN_TABLES_PHYS + 0x1000) | PTE_P | PTE_W;
    write_cr3(FN_TABLES_PHYS);
}

/*
 * The user address space. Its tables stay built between invocations: the body, output and
 * stack mappings never change, and only the function's image pages come and go (load_elf
 * maps them, scrub() unmaps them). PML4[0] is present only while a function runs.
 */
static void build_user_tables(void)
{
    for (unsigned i = 0; i < 4 * 512; i++)
        T_UPDPT[i] = 0;
    T_UPDPT[0] = (FN_TABLES_PHYS + 0x4000) | PTE_P | PTE_W | PTE_U;
    T_UPD[2] = (FN_TABLES_PHYS + 0x5000) | PTE_P | PTE_W | PTE_U;
    T_UPD[3] = (FN_TABLES_PHYS + 0x6000) | PTE_P | PTE_W | PTE_U;
}

static void map_user_page(uint64_t va, uint64_t pa, bool writable)
{
    volatile uint64_t *pt = va < 0x600000 ? T_UPT0 : T_UPT1;
    unsigned i = (unsigned)((va >> 12) & 511);
    pt[i] = pa | PTE_P | PTE_U | (writable ? PTE_W : 0) | (pt[i] & PTE_W);
}

static void map_user_range(uint64_t va, uint64_t pa, uint64_t len, bool writable)
{
    for (uint64_t off = 0; off < len; off += 4096)
        map_user_page(va + off, pa + off, writable);
    if (KS->nranges < 16) {
        KS->ranges[KS->nranges].va = va;
        KS->ranges[KS->nranges].len = len;
        KS->ranges[KS->nranges].writable = writable;
        KS->nranges++;
    }
}

/* [p, p+len) lies inside one mapped user range (writable if asked). */
static bool user_span_ok(uint64_t p, uint64_t len, bool write)
{
    for (uint32_t i = 0; i < KS->nranges; i++) {
        uint64_t va = KS->ranges[i].va, end = va + KS->ranges[i].len;
        if (p >= va && p <= end && len <= end - p && (!write || KS->ranges[i].writable))
            return true;
    }
    return false;
}

/* ---- the ELF loader ------------------------------------------------------------------ */

struct elf64_ehdr {
    uint8_t ident[16];
    uint16_t type, machine;
    uint32_t version;
    uint64_t entry, phoff, shoff;
    uint32_t flags;
    uint16_t ehsize, phentsize, phnum, shentsize, shnum, shstrndx;
};
struct elf64_phdr {
    uint32_t type, flags;
    uint64_t offset, vaddr, paddr, filesz, memsz, align;
};
#define PT_LOAD 1u
#define PF_X 1u
#define PF_W 2u

/* Loads the staged ELF into user pages; returns the entry point, or 0 when the file is refused. */
static uint64_t load_elf(uint32_t len)
{
    const uint8_t *file = PHYS(FN_ELF_PHYS);
    const struct elf64_ehdr *eh = (const struct elf64_ehdr *)file;
    if (len < sizeof *eh || len > FN_ELF_MAX || file[0] != 0x7f || file[1] != 'E' || file[2] != 'L' || file[3] != 'F' || file[4] != 2 || file[5] != 1)
        return 0;
    if (eh->type != 2 || eh->machine != 62 || eh->phentsize != sizeof(struct elf64_phdr) || eh->phnum == 0 || eh->phnum > 16)
        return 0;
    if (eh->phoff > len || (uint64_t)eh->phnum * sizeof(struct elf64_phdr) > len - eh->phoff)
        return 0;
    bool entry_ok = false;
    uint64_t top = FN_USER_BASE;
    for (unsigned i = 0; i < eh->phnum; i++) {
        const struct elf64_phdr *ph = (const struct elf64_phdr *)(file + eh->phoff + i * sizeof(struct elf64_phdr));
        if (ph->type != PT_LOAD)
            continue;
        if (ph->filesz > ph->memsz || ph->offset > len || ph->filesz > len - ph->offset)
            return 0;
        if (ph->vaddr < FN_USER_BASE || ph->vaddr >= FN_USER_LIMIT || ph->memsz > FN_USER_LIMIT - ph->vaddr)
            return 0;
        uint64_t start = ph->vaddr & ~0xfffull, end = (ph->vaddr + ph->memsz + 0xfff) & ~0xfffull;
        if (end > top)
            top = end;
        MB->user_pages = (uint32_t)((top - FN_USER_BASE) >> 12); /* what scrub() must clear, also if a later header is refused */
        for (uint64_t va = start; va < end; va += 4096)
            map_user_page(va, FN_USER_PHYS + (va - FN_USER_BASE), (ph->flags & PF_W) != 0);
        memcpy(PHYS(FN_USER_PHYS + (ph->vaddr - FN_USER_BASE)), file + ph->offset, ph->filesz);
        if ((ph->flags & PF_X) && eh->entry >= ph->vaddr && eh->entry < ph->vaddr + ph->memsz)
            entry_ok = true;
    }
    if (!entry_ok)
        return 0;
    /* One range for the whole image: syscalls check pointers against it (writable: .data/.bss may be passed). */
    if (KS->nranges < 16) {
        KS->ranges[KS->nranges].va = FN_USER_BASE;
        KS->ranges[KS->nranges].len = top - FN_USER_BASE;
        KS->ranges[KS->nranges].writable = true;
        KS->nranges++;
    }
    return eh->entry;
}

/* ---- interrupts from ring 3 --------------------------------------------------------------- */

static void fail_user(uint32_t status, struct intr_frame *f)
{
    MB->status = status;
    MB->fault_vector = f->vector;
    MB->fault_rip = f->rip;
    MB->fault_addr = f->vector == 14 ? read_cr2() : 0;
    MB->resp_len = 0;
    user_return();
}

static void on_exception(struct intr_frame *f)
{
    if ((f->cs & 3) != 3)
        guest_panic(EXIT_EXCEPTION, "function-runtime: kernel exception %llu rip=%#llx cr2=%#llx", (unsigned long long)f->vector,
                    (unsigned long long)f->rip, (unsigned long long)read_cr2());
    fail_user(FN_FAULT, f);
}

static void on_tick(struct intr_frame *f)
{
    pic_eoi(0);
    KS->ticks++;
    if ((f->cs & 3) == 3 && KS->ticks > MB->limit_ms)
        fail_user(FN_TIMEOUT, f);
}

static void copy_in_user(uint8_t *dst, uint64_t src, uint64_t n) { memcpy(dst, (const void *)(uintptr_t)src, n); }

/* External call: stage URL + body, let the host park the VM; the answer is in the staging area when the hypercall returns. */
static int64_t sys_external(struct intr_frame *f)
{
    uint64_t url = f->rdi, url_len = f->rsi, body = f->rdx, body_len = f->r10, resp = f->r8, cap = f->r9;
    if (url_len == 0 || url_len > FN_EXT_URL_MAX || body_len > FN_IO_MAX - FN_EXT_URL_MAX || !user_span_ok(url, url_len, false) ||
        !user_span_ok(body, body_len, false) || !user_span_ok(resp, cap, true))
        return -1;
    copy_in_user(PHYS(FN_EXT_PHYS), url, url_len);
    copy_in_user(PHYS(FN_EXT_PHYS + url_len), body, body_len);
    MB->ext_url_len = (uint32_t)url_len;
    MB->ext_body_len = (uint32_t)body_len;
    MB->ext_status = 0;
    MB->ext_resp_len = 0;
    tick_pause(); /* waiting on the outside does not count against the limit */
    hypercall(HC_FN_EXTERNAL, MB->seq);
    tick_resume();
    uint32_t st = MB->ext_status, n = MB->ext_resp_len;
    if (st == 0)
        return -2;
    if (n > FN_IO_MAX)
        n = FN_IO_MAX;
    if (n > cap)
        n = (uint32_t)cap;
    memcpy((void *)(uintptr_t)resp, PHYS(FN_EXT_PHYS), n);
    return st >= 200 && st < 300 ? (int64_t)n : -(int64_t)st;
}

static void on_syscall(struct intr_frame *f)
{
    switch (f->rax) {
    case FN_SYS_EXIT:
        if ((int64_t)f->rdi < 0) {
            MB->status = FN_FN_ERROR;
            MB->resp_len = 0;
            MB->fault_rip = f->rdi; /* the value it returned */
        } else if (f->rdi > FN_IO_MAX) {
            MB->status = FN_TOO_BIG;
            MB->resp_len = 0;
        } else {
            MB->status = FN_OK;
            MB->resp_len = (uint32_t)f->rdi;
        }
        user_return();
    case FN_SYS_EXTERNAL:
        f->rax = (uint64_t)sys_external(f);
        return;
    default:
        fail_user(FN_BAD_SYSCALL, f);
    }
}

/* ---- one invocation ----------------------------------------------------------------------- */

/* 64-bit stores, unrolled: the byte loop of memset costs an emulated block per byte. */
static void zero_page(uint64_t phys)
{
    volatile uint64_t *p = (volatile uint64_t *)(uintptr_t)PHYS_TO_HIGH(phys);
    for (unsigned i = 0; i < 512; i += 8) {
        p[i] = 0; p[i + 1] = 0; p[i + 2] = 0; p[i + 3] = 0;
        p[i + 4] = 0; p[i + 5] = 0; p[i + 6] = 0; p[i + 7] = 0;
    }
}

/* Zeroes the pages of [va, va+len) whose PTE the CPU marked dirty (the function wrote them), and re-arms the bit. */
static void scrub_dirty(uint64_t va, uint64_t len)
{
    volatile uint64_t *pt = va < 0x600000 ? T_UPT0 : T_UPT1;
    for (uint64_t off = 0; off < len; off += 4096) {
        unsigned i = (unsigned)(((va + off) >> 12) & 511);
        uint64_t pte = pt[i];
        if (pte & PTE_D) {
            zero_page(pte & 0x000ffffffffff000ull);
            pt[i] = pte & ~(PTE_D | PTE_A);
        }
    }
}

/*
 * After the answer, before the next request: nothing of this invocation survives. The image
 * pages are zeroed and unmapped, the output and stack pages the function dirtied are zeroed
 * (by the page tables' dirty bits). Done ahead of time, so the next request goes straight to
 * loading its function. The host may already be writing that request (body and ELF): those
 * areas are the host's to clear (it zeroes what is left of the previous body).
 */
static void scrub(void)
{
    uint32_t pages = MB->user_pages > 256 ? 256 : MB->user_pages;
    for (uint32_t i = 0; i < pages; i++) {
        zero_page(FN_USER_PHYS + (uint64_t)i * 4096);
        T_UPT0[i] = 0;
    }
    MB->user_pages = 0;
    scrub_dirty(FN_UOUT_VA, FN_IO_MAX);
    scrub_dirty(FN_USTACK_VA, FN_USTACK_TOP - FN_USTACK_VA);
}

static void run_invocation(void)
{
    MB->status = FN_OK;
    MB->resp_len = 0;
    MB->fault_vector = MB->fault_addr = MB->fault_rip = 0;
    KS->nranges = 0;
    uint32_t body_len = MB->body_len > FN_IO_MAX ? FN_IO_MAX : MB->body_len;
    uint64_t entry = load_elf(MB->elf_len);
    if (!entry) {
        MB->status = FN_BAD_ELF;
        return;
    }
    map_user_range(FN_UIN_VA, FN_BODY_PHYS, FN_IO_MAX, false);
    map_user_range(FN_UOUT_VA, FN_OUT_PHYS, FN_IO_MAX, true);
    map_user_range(FN_USTACK_VA, FN_USTACK_PHYS, FN_USTACK_TOP - FN_USTACK_VA, true);
    /* No TLB flush needed: since the last function's CR3 reload below, nothing touched user addresses. */
    T_PML4[0] = (FN_TABLES_PHYS + 0x3000) | PTE_P | PTE_W | PTE_U;
    KS->ticks = 0;
    tick_start();
    hypercall(HC_FN_USER_ENTER, MB->seq);
    enter_user(entry, FN_USTACK_TOP - 8, FN_UIN_VA, body_len, FN_UOUT_VA, FN_IO_MAX);
    tick_stop();
    T_PML4[0] = 0;
    write_cr3(FN_TABLES_PHYS);
}

__attribute__((noreturn)) static void serve(void)
{
    hypercall(HC_FN_READY, FN_ABI_VERSION);
    for (;;) {
        uint32_t seq = MB->seq;
        if (seq != KS->last_seq) {
            KS->last_seq = seq;
            run_invocation();
            MB->done_seq = seq;
            hypercall(HC_FN_RESPOND, seq); /* the host copies the response out here */
            scrub();
            continue;
        }
        hypercall(HC_FN_WAIT, seq);
    }
}

int guest_main(struct boot_info *bi)
{
    if (!(bi->flags & MBI_FLAG_MEMORY))
        guest_panic(EXIT_BAD_BOOT, "function-runtime: no memory size from the loader");
    uint64_t ram_end = 0x100000ull + (uint64_t)bi->mem_upper * 1024;
    if (ram_end < FN_PRIVATE_PHYS + FN_PRIVATE_BYTES || ram_end > (1ull << 30))
        guest_panic(EXIT_BAD_CONFIG, "function-runtime: needs 4 MiB to 1 GiB of RAM, has %llu KiB", (unsigned long long)(ram_end >> 10));
    if ((uint64_t)(uintptr_t)__kernel_end - KERNEL_VMA > FN_PRIVATE_PHYS)
        guest_panic(EXIT_CHECK_FAIL, "function-runtime: kernel image overlaps the private range");

    memset(PHYS(FN_PRIVATE_PHYS), 0, FN_PRIVATE_BYTES);
    build_kernel_tables();
    build_user_tables();
    pic_init();
    tick_stop(); /* the PIT powers on ticking at 18.2 Hz: stopped, no clone of this image keeps a timer while it waits */
    outb(0x21, 0xFA); /* IRQ0 and the cascade open for good: interrupts reach the runtime only in ring 3 (IF) */
    for (unsigned v = 0; v < 32; v++)
        isr_set_handler((uint8_t)v, on_exception);
    isr_set_handler(SYSCALL_VECTOR, on_syscall);
    idt_set_user(SYSCALL_VECTOR);
    isr_set_handler(PIT_VECTOR, on_tick);
    tss_set_rsp0(PHYS_TO_HIGH(FN_ISTACK_TOP));
    MB->magic = FN_MAILBOX_MAGIC;
    MB->ready = FN_ABI_VERSION;
    kprintf("function-runtime: ready (ABI %u, %llu KiB RAM)\n", FN_ABI_VERSION, (unsigned long long)(ram_end >> 10));
    /* Continue on the private kernel stack: nothing after READY writes shared memory but the console. */
    __asm__ volatile("mov %0, %%rsp; jmp *%1" ::"r"(PHYS_TO_HIGH(FN_KSTACK_TOP) - 8), "r"(serve) : "memory");
    __builtin_unreachable();
}
