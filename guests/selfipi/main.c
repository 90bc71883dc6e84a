/*
 * selfipi: self-IPIs back to back. Each round writes the ICR (fixed, to its
 * own APIC ID) with interrupts enabled, then counts the loop iterations that
 * run before the handler does. On hardware the interrupt is taken at the
 * first instruction boundary after the write; an emulator that holds it until
 * a time slice ends shows thousands. Command line: count=N (default 10000).
 * Prints the rounds, how many needed more than MAX_SPINS iterations (late),
 * and the most any round needed.
 */
#include "x86_64.h"

#define SELF_VECTOR 0x42
#define MAX_SPINS 4u

static volatile uint32_t handled;

static void on_self_ipi(struct intr_frame *f)
{
    (void)f;
    handled++;
    lapic_eoi();
}

int guest_main(struct boot_info *bi)
{
    uint32_t count;
    if (cmdline_get_u32(bi->cmdline, "count", 10000, &count) < 0 || count == 0)
        guest_panic(EXIT_BAD_CONFIG, "selfipi: bad count=");
    pic_init();
    lapic_enable();
    isr_set_handler(SELF_VECTOR, on_self_ipi);
    uint32_t self = lapic_id();
    cpu_sti();
    uint32_t late = 0, most = 0;
    for (uint32_t i = 0; i < count; i++) {
        uint32_t before = handled;
        if (!lapic_send_ipi(self, SELF_VECTOR))
            guest_panic(EXIT_CHECK_FAIL, "selfipi: the ICR never went idle");
        uint32_t spins = 0;
        while (handled == before) {
            if (++spins > 100000000u)
                guest_panic(EXIT_CHECK_FAIL, "selfipi: self-IPI %u never arrived", i);
        }
        late += spins > MAX_SPINS;
        if (spins > most)
            most = spins;
    }
    kprintf("selfipi: %u self-IPIs handled, %u late (more than %u loop iterations after the ICR write), at most %u\n", handled, late, MAX_SPINS,
            most);
    return late ? EXIT_CHECK_FAIL : EXIT_OK;
}
