/* Firmament guest support library: x86-64 (long mode) specifics. */
#ifndef FM_X86_64_H
#define FM_X86_64_H

#include "guest.h"

/* The kernel is linked at KERNEL_VMA + physical address (high half). The
 * boot trampoline maps physical 0..2 GiB there, and identity maps 0..4 GiB. */
#define KERNEL_VMA 0xFFFFFFFF80000000ull
#define PHYS_TO_HIGH(p) ((uint64_t)(p) + KERNEL_VMA)
#define HIGH_TO_PHYS(v) ((uint64_t)(v) - KERNEL_VMA)

extern char __kernel_start[], __kernel_end[];

/* ---- segments ---------------------------------------------------------------
 * 0x08 kernel code64, 0x10 kernel data, 0x18 user code32 (unused),
 * 0x20 user data, 0x28 user code64, 0x30 TSS (BSP only). */
#define SEL_KCODE 0x08
#define SEL_KDATA 0x10
#define SEL_UDATA (0x20 | 3)
#define SEL_UCODE (0x28 | 3)
#define SEL_TSS   0x30
/* IA32_STAR: SYSCALL CS=0x08 SS=0x10; SYSRET CS=0x2b SS=0x23. */
#define STAR_VALUE (((uint64_t)(0x18 | 3) << 48) | ((uint64_t)SEL_KCODE << 32))

#define MSR_APIC_BASE 0x0000001B
#define MSR_EFER      0xC0000080
#define MSR_STAR      0xC0000081
#define MSR_LSTAR     0xC0000082
#define MSR_SFMASK    0xC0000084
#define EFER_SCE      (1u << 0)
#define EFER_LME      (1u << 8)
#define EFER_NXE      (1u << 11)

static inline uint64_t rdmsr(uint32_t msr)
{
    uint32_t lo, hi;
    __asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
    return (uint64_t)hi << 32 | lo;
}
static inline void wrmsr(uint32_t msr, uint64_t v)
{
    __asm__ volatile("wrmsr" ::"c"(msr), "a"((uint32_t)v), "d"((uint32_t)(v >> 32)) : "memory");
}
static inline uint64_t read_cr2(void) { uint64_t v; __asm__ volatile("mov %%cr2, %0" : "=r"(v)); return v; }
static inline uint64_t read_cr3(void) { uint64_t v; __asm__ volatile("mov %%cr3, %0" : "=r"(v)); return v; }
static inline void write_cr3(uint64_t v) { __asm__ volatile("mov %0, %%cr3" ::"r"(v) : "memory"); }
static inline void invlpg(uint64_t va) { __asm__ volatile("invlpg (%0)" ::"r"(va) : "memory"); }
static inline uint64_t read_rflags(void) { uint64_t v; __asm__ volatile("pushfq; popq %0" : "=r"(v)); return v; }

/* ---- interrupts ---------------------------------------------------------------- */
struct intr_frame {
    uint64_t r15, r14, r13, r12, r11, r10, r9, r8;
    uint64_t rbp, rdi, rsi, rdx, rcx, rbx, rax;
    uint64_t vector, error_code;
    uint64_t rip, cs, rflags, rsp, ss; /* pushed by the CPU */
};
typedef void (*isr_handler_t)(struct intr_frame *f);

void cpu_init_bsp(void);            /* GDT+TSS+IDT, masks the 8259s */
void cpu_init_ap(void);             /* GDT+IDT (shared, no TSS) */
void isr_set_handler(uint8_t vector, isr_handler_t h);
void tss_set_rsp0(uint64_t rsp0);
void tss_allow_port(uint16_t port, bool allow); /* I/O bitmap, ports 0-0xFF (others always denied) */
void idt_set_user(uint8_t vector);  /* gate DPL 3 */
void idt_set_raw(uint8_t vector, void (*stub)(void)); /* gate to an assembly stub instead of isr_dispatch */

/* ---- 8259 PIC and 8254 PIT --------------------------------------------------- */
#define PIC_VECTOR_BASE 0x20 /* IRQ n -> vector 0x20 + n after pic_init() */
void pic_init(void);                /* remap to 0x20/0x28, all IRQs masked */
void pic_mask_all(void);
void pic_unmask(unsigned irq);
void pic_mask(unsigned irq);
void pic_eoi(unsigned irq);

#define PIT_HZ 1193182u
extern volatile uint64_t pit_ticks;
/* Program channel 0 as a rate generator at `hz`, count ticks in pit_ticks
 * and unmask IRQ0 (requires pic_init()). `hook`, if set, runs on each tick. */
void pit_start(uint32_t hz, void (*hook)(void));
void pit_stop(void);
/* Idle in HLT until `ms` ticks of a 1000 Hz PIT have passed. */
void pit_sleep_ticks(uint64_t ticks);

/* ---- local APIC (xAPIC, MMIO at 0xFEE00000, identity mapped) --------------------- */
#define LAPIC_SPURIOUS_VECTOR 0xFF
#define LAPIC_REG_ID      0x020
#define LAPIC_REG_EOI     0x0B0
#define LAPIC_REG_SVR     0x0F0
#define LAPIC_REG_ICR_LO  0x300
#define LAPIC_REG_ICR_HI  0x310
#define LAPIC_REG_LVT_TMR 0x320
#define LAPIC_REG_TMR_INIT 0x380
#define LAPIC_REG_TMR_CUR 0x390
#define LAPIC_REG_TMR_DIV 0x3E0
bool lapic_present(void);
void lapic_enable(void);            /* software-enable, spurious vector 0xFF */
uint32_t lapic_read(uint32_t reg);
void lapic_write(uint32_t reg, uint32_t v);
uint32_t lapic_id(void);
void lapic_eoi(void);
bool lapic_send_ipi(uint32_t dest_apic_id, uint32_t icr_lo); /* false: delivery timed out */

/* ---- SMP bring-up -------------------------------------------------------------------- */
#define SMP_MAX_APS 15
#define SMP_TRAMPOLINE_PHYS 0x7000  /* SIPI vector 0x07 */
typedef void (*ap_main_t)(unsigned ap_index);
/* Copies the real-mode trampoline to 0x7000, broadcasts INIT-SIPI-SIPI to all
 * other CPUs and waits `wait_ms` of PIT time (needs pit_start(1000)) for them
 * to check in. Returns the number of APs that checked in; those run
 * ap_main(index) on their own stack (index 0..n-1, interrupts off). APs that
 * check in after the window closed halt without running ap_main. */
unsigned smp_start_aps(ap_main_t ap_main, uint32_t wait_ms);
__attribute__((noreturn)) void ap_halt_forever(void);

#endif
