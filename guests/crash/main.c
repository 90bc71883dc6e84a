/*
 * crash: triple-faults on purpose. It loads an empty IDT and executes INT3:
 * #GP on the missing gate, #DF on the missing #GP gate, then shutdown.
 * A hypervisor must stop only this VM and report the triple fault.
 */
#include "guest.h"

int guest_main(struct boot_info *bi)
{
    (void)bi;
    static const struct __attribute__((packed)) {
        uint16_t limit;
        uint32_t base;
    } empty_idt = { 0, 0 };
    kputs("crash: loading an empty IDT and raising #BP\n");
    __asm__ volatile("lidt %0; int3" ::"m"(empty_idt) : "memory");
    kputs("crash: still alive?\n");
    return EXIT_CHECK_FAIL;
}
