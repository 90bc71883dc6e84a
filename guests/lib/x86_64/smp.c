/* Start application processors with INIT-SIPI-SIPI (xAPIC broadcast). */
#include "x86_64.h"

#define AP_STACK_SIZE 16384
#define CHECKIN_CLOSED 0x80000000u

extern char ap_tramp_start[], ap_tramp_end[];
extern char ap_tramp_entry[], ap_tramp_stack_base[], ap_tramp_cr3[], ap_tramp_next_index[];

static uint8_t ap_stacks[SMP_MAX_APS][AP_STACK_SIZE] __attribute__((aligned(16)));
static volatile uint32_t smp_checkin;
static ap_main_t ap_main_fn;

__attribute__((noreturn)) void ap_halt_forever(void)
{
    for (;;)
        __asm__ volatile("cli; hlt");
}

/* Reached from the trampoline in long mode on the AP's own stack. */
__attribute__((noreturn)) void ap_entry64(unsigned stack_slot)
{
    (void)stack_slot;
    cpu_init_ap();
    lapic_enable();
    uint32_t pos = __atomic_fetch_add(&smp_checkin, 1, __ATOMIC_SEQ_CST);
    if (!(pos & CHECKIN_CLOSED))
        ap_main_fn(pos);
    ap_halt_forever();
}

static void tramp_set(const char *field, const void *v, size_t n)
{
    memcpy((void *)(uintptr_t)(SMP_TRAMPOLINE_PHYS + (uintptr_t)(field - ap_tramp_start)), v, n);
}

unsigned smp_start_aps(ap_main_t ap_main, uint32_t wait_ms)
{
    size_t len = (size_t)(ap_tramp_end - ap_tramp_start);
    uint64_t cr3 = read_cr3();
    if (cr3 >> 32)
        guest_panic(EXIT_CHECK_FAIL, "smp: page tables above 4 GiB");
    lapic_enable();
    memcpy((void *)(uintptr_t)SMP_TRAMPOLINE_PHYS, ap_tramp_start, len);
    uint64_t entry = (uint64_t)ap_entry64, stacks = (uint64_t)ap_stacks;
    uint32_t cr3_32 = (uint32_t)cr3, zero = 0;
    tramp_set(ap_tramp_entry, &entry, 8);
    tramp_set(ap_tramp_stack_base, &stacks, 8);
    tramp_set(ap_tramp_cr3, &cr3_32, 4);
    tramp_set(ap_tramp_next_index, &zero, 4);
    ap_main_fn = ap_main;
    smp_checkin = 0;
    __atomic_thread_fence(__ATOMIC_SEQ_CST);

    /* INIT (level assert), all excluding self; 10 ms; SIPI; 1 ms; SIPI. */
    bool ok = lapic_send_ipi(0, 0x000C4500);
    pit_sleep_ticks(10);
    ok = lapic_send_ipi(0, 0x000C4600 | (SMP_TRAMPOLINE_PHYS >> 12)) && ok;
    pit_sleep_ticks(1);
    ok = lapic_send_ipi(0, 0x000C4600 | (SMP_TRAMPOLINE_PHYS >> 12)) && ok;
    if (!ok)
        guest_panic(EXIT_CHECK_FAIL, "smp: IPI delivery timed out");
    pit_sleep_ticks(wait_ms);
    uint32_t n = __atomic_fetch_or(&smp_checkin, CHECKIN_CLOSED, __ATOMIC_SEQ_CST);
    return n & ~CHECKIN_CLOSED;
}
