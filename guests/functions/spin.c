/* spin (a test of isolation): never returns; the per-invocation time limit stops it. */
#include "fn.h"

long handle(const uint8_t *body, size_t len, uint8_t *out, size_t cap)
{
    (void)body; (void)len; (void)out; (void)cap;
    for (volatile unsigned long i = 0;; i++)
        ;
}
