/* isa-debug-exit and panic. */
#include "guest.h"

__attribute__((noreturn)) void guest_exit(uint32_t code)
{
    serial_drain();
    /* QEMU's isa-debug-exit (iobase=0xf4) exits with status (code << 1) | 1. */
    outl(DEBUG_EXIT_PORT, code);
    /* No exit device: say so and stop this CPU for good. */
    kprintf("guest: isa-debug-exit did not stop the machine (code %u); halting\n", code);
    for (;;)
        __asm__ volatile("cli; hlt");
}

__attribute__((noreturn)) void guest_panic(uint32_t code, const char *fmt, ...)
{
    va_list ap;
    kputs("PANIC: ");
    va_start(ap, fmt);
    kvprintf(fmt, ap);
    va_end(ap);
    kputs("\n");
    guest_exit(code);
}
