/* crash (a test of isolation): reads through a null pointer. */
#include "fn.h"

long handle(const uint8_t *body, size_t len, uint8_t *out, size_t cap)
{
    (void)body; (void)len; (void)out; (void)cap;
    return *(volatile long *)0;
}
