/* COM1 console and a small printf for Firmament guests. */
#include "guest.h"

#define UART_THR 0
#define UART_IER 1
#define UART_FCR 2
#define UART_LCR 3
#define UART_MCR 4
#define UART_LSR 5
#define UART_DLL 0
#define UART_DLM 1
#define LSR_THRE 0x20
#define LSR_TEMT 0x40

void serial_init(void)
{
    outb(COM1_PORT + UART_IER, 0x00);  /* no UART interrupts */
    outb(COM1_PORT + UART_LCR, 0x80);  /* DLAB on */
    outb(COM1_PORT + UART_DLL, 0x01);  /* divisor 1: 115200 baud */
    outb(COM1_PORT + UART_DLM, 0x00);
    outb(COM1_PORT + UART_LCR, 0x03);  /* 8N1, DLAB off */
    outb(COM1_PORT + UART_FCR, 0xC7);  /* FIFO on, clear, 14-byte threshold */
    outb(COM1_PORT + UART_MCR, 0x03);  /* DTR + RTS, OUT2 off (no IRQ) */
}

static void uart_tx(char c)
{
    /* Bounded wait: a missing UART reads 0xff (THRE set) and must not hang us. */
    for (uint32_t i = 0; i < 1000000u; i++) {
        if (inb(COM1_PORT + UART_LSR) & LSR_THRE)
            break;
        cpu_pause();
    }
    outb(COM1_PORT + UART_THR, (uint8_t)c);
}

/* Wait until the last byte has left the UART: THRE rises when a byte moves to
 * the shift register, TEMT once it is out (under QEMU: once its stdio write
 * succeeded). Exiting before that can lose the end of the transcript. */
void serial_drain(void)
{
    for (uint32_t i = 0; i < 1000000u; i++) {
        if (inb(COM1_PORT + UART_LSR) & LSR_TEMT)
            break;
        cpu_pause();
    }
}

void serial_putc(char c)
{
    if (c == '\n')
        uart_tx('\r');
    uart_tx(c);
}

void kwrite(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        serial_putc(s[i]);
}

void kputs(const char *s)
{
    while (*s)
        serial_putc(*s++);
}

/* 64-bit unsigned division by a small radix without libgcc (i386 has no
 * native 64/32 division that gcc would inline). */
static uint32_t divmod_small(uint64_t *v, uint32_t radix)
{
    uint32_t hi = (uint32_t)(*v >> 32), lo = (uint32_t)*v;
    uint32_t qhi = hi / radix, r = hi % radix;
    uint32_t qlo = 0;
    for (int bit = 31; bit >= 0; bit--) {
        /* r < radix <= 16, so (r << 1) | bit never overflows */
        r = (r << 1) | ((lo >> bit) & 1u);
        if (r >= radix) {
            r -= radix;
            qlo |= 1u << bit;
        }
    }
    *v = ((uint64_t)qhi << 32) | qlo;
    return r;
}

static void put_num(uint64_t v, uint32_t radix, int width, char pad, bool upper, bool left)
{
    char buf[24];
    int n = 0;
    const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
    do {
        buf[n++] = digits[divmod_small(&v, radix)];
    } while (v != 0);
    int fill = width > n ? width - n : 0;
    if (!left)
        for (int i = 0; i < fill; i++)
            serial_putc(pad);
    while (n > 0)
        serial_putc(buf[--n]);
    if (left)
        for (int i = 0; i < fill; i++)
            serial_putc(' ');
}

void put_hex(uint64_t v, int digits)
{
    kputs("0x");
    put_num(v, 16, digits, '0', false, false);
}

void put_dec(uint64_t v)
{
    put_num(v, 10, 0, ' ', false, false);
}

void kvprintf(const char *fmt, va_list ap)
{
    for (const char *p = fmt; *p; p++) {
        if (*p != '%') {
            serial_putc(*p);
            continue;
        }
        p++;
        char pad = ' ';
        bool left = false, alt = false;
        for (;; p++) {
            if (*p == '0') pad = '0';
            else if (*p == '-') left = true;
            else if (*p == '#') alt = true;
            else break;
        }
        int width = 0;
        while (*p >= '0' && *p <= '9')
            width = width * 10 + (*p++ - '0');
        int lng = 0; /* 0: int, 1: long, 2: long long, 3: size_t */
        for (;; p++) {
            if (*p == 'l') lng = lng ? 2 : 1;
            else if (*p == 'z') lng = 3;
            else break;
        }
        switch (*p) {
        case '\0':
            return;
        case '%':
            serial_putc('%');
            break;
        case 'c':
            serial_putc((char)va_arg(ap, int));
            break;
        case 's': {
            const char *s = va_arg(ap, const char *);
            if (!s) s = "(null)";
            int len = (int)strlen(s);
            if (!left) for (int i = len; i < width; i++) serial_putc(' ');
            kputs(s);
            if (left) for (int i = len; i < width; i++) serial_putc(' ');
            break;
        }
        case 'd': case 'i': {
            int64_t v;
            if (lng == 2) v = va_arg(ap, long long);
            else if (lng == 1) v = va_arg(ap, long);
            else if (lng == 3) v = (int64_t)va_arg(ap, size_t);
            else v = va_arg(ap, int);
            uint64_t u = (uint64_t)v;
            if (v < 0) { serial_putc('-'); u = (uint64_t)0 - u; if (width) width--; }
            put_num(u, 10, width, pad, false, left);
            break;
        }
        case 'u': case 'x': case 'X': {
            uint64_t v;
            if (lng == 2) v = va_arg(ap, unsigned long long);
            else if (lng == 1) v = va_arg(ap, unsigned long);
            else if (lng == 3) v = va_arg(ap, size_t);
            else v = va_arg(ap, unsigned int);
            if (*p != 'u' && alt) {
                kputs("0x"); /* as in C, the width includes the prefix */
                width = width > 2 ? width - 2 : 0;
            }
            put_num(v, *p == 'u' ? 10 : 16, width, pad, *p == 'X', left);
            break;
        }
        default:
            serial_putc('%');
            serial_putc(*p);
            break;
        }
    }
}

void kprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    kvprintf(fmt, ap);
    va_end(ap);
}
