/* Freestanding helpers shared by the firmware and the test payload. */
#ifndef FW_LIB_H
#define FW_LIB_H

#include "types.h"

void *memset(void *dst, int c, size_t n);
void *memcpy(void *dst, const void *src, size_t n);
void *memmove(void *dst, const void *src, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
int strcmp(const char *a, const char *b);

/* Minimal printf: %% %c %s %d %i %u %x %X %p with '0'/'-' flags, width and
 * the length modifiers l, ll, z (all 64-bit). Output goes through putc. */
typedef void (*fmt_putc_fn)(char c);
void fmt_vprintf(fmt_putc_fn putc, const char *fmt, va_list ap);

#endif
