/* Local APIC in xAPIC mode (MMIO at 0xFEE00000, identity mapped, uncached). */
#include "x86_64.h"

#define LAPIC_MMIO 0xFEE00000ull

static volatile uint32_t *lapic_reg(uint32_t reg)
{
    return (volatile uint32_t *)(uintptr_t)(LAPIC_MMIO + reg);
}

uint32_t lapic_read(uint32_t reg) { return *lapic_reg(reg); }
void lapic_write(uint32_t reg, uint32_t v) { *lapic_reg(reg) = v; }
uint32_t lapic_id(void) { return lapic_read(LAPIC_REG_ID) >> 24; }
void lapic_eoi(void) { lapic_write(LAPIC_REG_EOI, 0); }

bool lapic_present(void)
{
    uint32_t a, b, c, d;
    cpuid(1, 0, &a, &b, &c, &d);
    return (d >> 9) & 1;
}

void lapic_enable(void)
{
    if (!lapic_present())
        guest_panic(EXIT_NO_CPU_FEAT, "lapic: CPU has no local APIC");
    uint64_t base = rdmsr(MSR_APIC_BASE);
    if ((base & 0xFFFFF000ull) != LAPIC_MMIO || !(base & (1u << 11))) {
        /* Put it (back) at the architectural address, globally enabled. */
        wrmsr(MSR_APIC_BASE, (base & 0x100) | LAPIC_MMIO | (1u << 11));
    }
    lapic_write(0x080, 0);                                 /* TPR: accept all */
    lapic_write(LAPIC_REG_SVR, 0x100 | LAPIC_SPURIOUS_VECTOR); /* software enable */
}

bool lapic_send_ipi(uint32_t dest_apic_id, uint32_t icr_lo)
{
    lapic_write(LAPIC_REG_ICR_HI, dest_apic_id << 24);
    lapic_write(LAPIC_REG_ICR_LO, icr_lo);
    for (uint32_t i = 0; i < 10000000u; i++) {
        if (!(lapic_read(LAPIC_REG_ICR_LO) & (1u << 12))) /* delivery status idle */
            return true;
        cpu_pause();
    }
    return false;
}
