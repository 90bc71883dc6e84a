/*
 * OS console: the firmware's console as named in the boot-info block (COM1
 * 16550 at 0x3F8, already initialised 115200 8N1, or debugcon port 0xE9).
 * '\n' is sent as "\r\n".
 */
#include "os.h"

#define COM1      0x3f8
#define UART_LSR  5
#define LSR_THRE  0x20
#define LSR_TEMT  0x40
#define DEBUGCON  0xe9

static u8 console_kind = BOOTINFO_CONSOLE_COM1;
static bool uart_stalled;

void console_init(u8 kind)
{
	console_kind = kind;
}

static void raw_putc(char c)
{
	if (console_kind == BOOTINFO_CONSOLE_DEBUGCON) {
		outb(DEBUGCON, (u8)c);
		return;
	}
	if (console_kind != BOOTINFO_CONSOLE_COM1)
		return;
	/* A slow reader on the other end (QEMU's stdio pipe) can hold THRE low for
	 * a long time: wait generously so nothing is dropped, but only once: a
	 * UART that never drains is treated as stalled and not waited for again. */
	u32 limit = uart_stalled ? 1000 : 50000000;
	u32 i = 0;
	while (!(inb(COM1 + UART_LSR) & LSR_THRE) && ++i < limit)
		__asm__ volatile("pause");
	if (i == limit)
		uart_stalled = true;
	else if (uart_stalled && i < 1000)
		uart_stalled = false;
	outb(COM1, (u8)c);
}

/* Before the machine stops: wait until the UART has sent its last byte. THRE
 * rises when a byte moves to the shift register, TEMT only once it is out;
 * QEMU sets TEMT when its stdio write has succeeded, so exiting on THRE alone
 * can lose the final characters. */
void console_drain(void)
{
	if (console_kind != BOOTINFO_CONSOLE_COM1 || uart_stalled)
		return;
	for (u32 i = 0; i < 50000000 && !(inb(COM1 + UART_LSR) & LSR_TEMT); i++)
		__asm__ volatile("pause");
}

void console_putc(char c)
{
	if (c == '\n')
		raw_putc('\r');
	raw_putc(c);
}

void kvprintf(const char *fmt, va_list ap)
{
	fmt_vprintf(console_putc, fmt, ap);
}

void kprintf(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	kvprintf(fmt, ap);
	va_end(ap);
}

/* ksnprintf: fmt_vprintf into a bounded buffer (the printf core takes a bare
 * putc callback, so the target lives in a static; the kernel is single
 * threaded and never formats from interrupt context into two buffers). */
static char *sn_buf;
static u32 sn_size, sn_len;

static void sn_putc(char c)
{
	if (sn_len + 1 < sn_size)
		sn_buf[sn_len] = c;
	sn_len++;
}

int kvsnprintf(char *buf, u32 size, const char *fmt, va_list ap)
{
	sn_buf = buf;
	sn_size = size;
	sn_len = 0;
	fmt_vprintf(sn_putc, fmt, ap);
	if (size)
		buf[sn_len < size ? sn_len : size - 1] = 0;
	return (int)sn_len;
}

int ksnprintf(char *buf, u32 size, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = kvsnprintf(buf, size, fmt, ap);
	va_end(ap);
	return n;
}

void print_hex_bytes(const u8 *p, u32 n)
{
	for (u32 i = 0; i < n; i++)
		kprintf("%02x", p[i]);
}
