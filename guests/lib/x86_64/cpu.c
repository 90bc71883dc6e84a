/* GDT, TSS, IDT and exception dispatch for 64-bit guests. */
#include "x86_64.h"

struct tss64 {
    uint32_t reserved0;
    uint64_t rsp[3];
    uint64_t reserved1;
    uint64_t ist[7];
    uint64_t reserved2;
    uint16_t reserved3;
    uint16_t iomap_base;
    /* I/O permission bitmap for ports 0-0xFF (a set bit denies), then the
     * all-ones byte the CPU needs after it; ports above 0xFF lie beyond the
     * TSS limit and always fault at CPL > IOPL. */
    uint8_t iomap[32];
    uint8_t iomap_end;
} __attribute__((packed));

struct idt_gate {
    uint16_t offset_lo;
    uint16_t selector;
    uint8_t ist;
    uint8_t type_attr;
    uint16_t offset_mid;
    uint32_t offset_hi;
    uint32_t reserved;
} __attribute__((packed));

struct desc_ptr {
    uint16_t limit;
    uint64_t base;
} __attribute__((packed));

static uint64_t gdt[8] __attribute__((aligned(16)));
static struct tss64 tss __attribute__((aligned(16)));
static struct idt_gate idt[256] __attribute__((aligned(16)));
static isr_handler_t handlers[256];
static uint8_t ring0_stack[16384] __attribute__((aligned(16)));

extern char isr_stubs[];
extern char boot_stack_top[];

static void gdt_setup(void)
{
    gdt[0] = 0;
    gdt[1] = 0x00AF9A000000FFFFull; /* 0x08 kernel code64 */
    gdt[2] = 0x00CF92000000FFFFull; /* 0x10 kernel data */
    gdt[3] = 0x00CFFA000000FFFFull; /* 0x18 user code32 (SYSRET base, unused) */
    gdt[4] = 0x00CFF2000000FFFFull; /* 0x20 user data */
    gdt[5] = 0x00AFFA000000FFFFull; /* 0x28 user code64 */
    uint64_t base = (uint64_t)&tss, limit = sizeof(tss) - 1;
    gdt[6] = (limit & 0xFFFF) | ((base & 0xFFFFFF) << 16) | (0x89ull << 40) | (((limit >> 16) & 0xF) << 48) |
             (((base >> 24) & 0xFF) << 56);
    gdt[7] = base >> 32;
    tss.rsp[0] = (uint64_t)(ring0_stack + sizeof(ring0_stack));
    tss.iomap_base = __builtin_offsetof(struct tss64, iomap); /* every port denied until tss_allow_port */
    memset(tss.iomap, 0xFF, sizeof(tss.iomap));
    tss.iomap_end = 0xFF;
}

static void gdt_load(void)
{
    struct desc_ptr p = { sizeof(gdt) - 1, (uint64_t)gdt };
    __asm__ volatile("lgdt %0\n\t"
                     "pushq $0x08\n\t"
                     "leaq 1f(%%rip), %%rax\n\t"
                     "pushq %%rax\n\t"
                     "lretq\n"
                     "1:\n\t"
                     "movw $0x10, %%ax\n\t"
                     "movw %%ax, %%ds\n\t"
                     "movw %%ax, %%es\n\t"
                     "movw %%ax, %%ss\n\t"
                     "xorw %%ax, %%ax\n\t"
                     "movw %%ax, %%fs\n\t"
                     "movw %%ax, %%gs\n\t"
                     :
                     : "m"(p)
                     : "rax", "memory");
}

static void idt_setup(void)
{
    for (int v = 0; v < 256; v++) {
        uint64_t h = (uint64_t)(isr_stubs + 16 * v);
        idt[v].offset_lo = (uint16_t)h;
        idt[v].selector = SEL_KCODE;
        idt[v].ist = 0;
        idt[v].type_attr = 0x8E; /* present, DPL 0, 64-bit interrupt gate */
        idt[v].offset_mid = (uint16_t)(h >> 16);
        idt[v].offset_hi = (uint32_t)(h >> 32);
        idt[v].reserved = 0;
    }
}

static void idt_load(void)
{
    struct desc_ptr p = { sizeof(idt) - 1, (uint64_t)idt };
    __asm__ volatile("lidt %0" ::"m"(p) : "memory");
}

void isr_set_handler(uint8_t vector, isr_handler_t h)
{
    handlers[vector] = h;
}

void tss_set_rsp0(uint64_t rsp0)
{
    tss.rsp[0] = rsp0;
}

void tss_allow_port(uint16_t port, bool allow)
{
    if (port >= 8 * sizeof(tss.iomap))
        return;
    if (allow)
        tss.iomap[port >> 3] &= (uint8_t)~(1u << (port & 7));
    else
        tss.iomap[port >> 3] |= (uint8_t)(1u << (port & 7));
}

void idt_set_raw(uint8_t vector, void (*stub)(void))
{
    uint64_t h = (uint64_t)stub;
    idt[vector].offset_lo = (uint16_t)h;
    idt[vector].offset_mid = (uint16_t)(h >> 16);
    idt[vector].offset_hi = (uint32_t)(h >> 32);
}

void idt_set_user(uint8_t vector)
{
    idt[vector].type_attr = 0xEE; /* present, DPL 3: INT n allowed from ring 3 */
}

static const char *const exc_names[32] = {
    "#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD", "#NM", "#DF", "CSO", "#TS", "#NP", "#SS", "#GP", "#PF", "#15",
    "#MF", "#AC", "#MC", "#XM", "#VE", "#CP", "#22", "#23", "#24", "#25", "#26", "#27", "#HV", "#VC", "#SX", "#31",
};

void isr_dispatch(struct intr_frame *f)
{
    uint8_t v = (uint8_t)f->vector;
    if (handlers[v]) {
        handlers[v](f);
        return;
    }
    if (v == LAPIC_SPURIOUS_VECTOR)
        return; /* spurious: no EOI */
    if (v < 32)
        guest_panic(EXIT_EXCEPTION, "unexpected exception %s (vector %u) error=%#llx rip=%#llx cs=%#llx cr2=%#llx",
                    exc_names[v], v, (unsigned long long)f->error_code, (unsigned long long)f->rip,
                    (unsigned long long)f->cs, (unsigned long long)read_cr2());
    guest_panic(EXIT_EXCEPTION, "unexpected interrupt vector %u rip=%#llx", v, (unsigned long long)f->rip);
}

void cpu_init_bsp(void)
{
    gdt_setup();
    gdt_load();
    __asm__ volatile("ltr %w0" ::"r"((uint16_t)SEL_TSS));
    idt_setup();
    idt_load();
    pic_mask_all(); /* nothing from the 8259s until a guest asks */
}

void cpu_init_ap(void)
{
    gdt_load();
    idt_load();
}

/* Called by entry.S in long mode, on the high-half boot stack. */
__attribute__((noreturn)) void x86_64_boot(uint32_t magic, uint32_t mbi)
{
    cpu_init_bsp();
    boot_main(magic, mbi);
}
