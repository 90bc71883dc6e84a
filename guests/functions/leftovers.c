/*
 * leftovers: checks that nothing of an earlier invocation reaches this one (a test function).
 * Body "write": fills its .bss, the whole output buffer and 32 KiB of its stack with 0xA5.
 * Body "read": counts the non-zero bytes it can see where an earlier invocation wrote, or
 * beyond its own request body, and answers "bss=N out=N stack=N body=N" (all 0 when clean).
 */
#include "fn.h"

/* The runtime maps the body with 64 KiB and the stack at 0x7F0000-0x800000 (docs/functions.md). */
#define BODY_MAP 0x10000u
#define STACK_LOW 0x7F0000ull

static uint8_t scratch[16384];

static size_t nonzero(const volatile uint8_t *p, size_t n)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        c += p[i] != 0;
    return c;
}

static __attribute__((noinline)) void dirty_stack(void)
{
    volatile uint8_t big[32768];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = 0xA5;
}

static size_t put(uint8_t *out, size_t at, const char *key, size_t v)
{
    while (*key)
        out[at++] = (uint8_t)*key++;
    char digits[24];
    int n = 0;
    do {
        digits[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        out[at++] = (uint8_t)digits[--n];
    return at;
}

long handle(const uint8_t *body, size_t len, uint8_t *out, size_t cap)
{
    if (len >= 1 && body[0] == 'w') {
        for (size_t i = 0; i < sizeof scratch; i++)
            ((volatile uint8_t *)scratch)[i] = 0xA5;
        dirty_stack();
        for (size_t i = 0; i < cap; i++)
            ((volatile uint8_t *)out)[i] = 0xA5;
        out[0] = 'w';
        return 1;
    }
    /* Everything below this frame's locals, with a margin for the calls it makes. */
    uintptr_t sp = (uintptr_t)__builtin_frame_address(0) - 1024;
    size_t bss = nonzero(scratch, sizeof scratch);
    size_t o = nonzero(out, cap);
    size_t st = nonzero((const volatile uint8_t *)STACK_LOW, sp - STACK_LOW);
    size_t b = nonzero(body + len, BODY_MAP - len);
    size_t at = put(out, 0, "bss=", bss);
    at = put(out, at, " out=", o);
    at = put(out, at, " stack=", st);
    at = put(out, at, " body=", b);
    return (long)at;
}
