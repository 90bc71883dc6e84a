/* wild (a test of isolation): writes over the runtime's kernel (its high-half image and its mailbox). */
#include "fn.h"

long handle(const uint8_t *body, size_t len, uint8_t *out, size_t cap)
{
    (void)body; (void)len; (void)out; (void)cap;
    *(volatile uint64_t *)0xFFFFFFFF80218000ull = 0xdeadbeef; /* the mailbox, through the kernel's view */
    return 0;
}
