/*
 * Log console: COM1 16550 at 0x3F8 (115200 8N1, polled), or QEMU debugcon
 * port 0xE9 when the UART fails its probe. '\n' is sent as "\r\n".
 */
#include "fw.h"

#define COM1        0x3f8
#define UART_THR    0
#define UART_RBR    0
#define UART_DLL    0
#define UART_IER    1
#define UART_DLM    1
#define UART_FCR    2
#define UART_LCR    3
#define UART_MCR    4
#define UART_LSR    5
#define UART_SCR    7
#define LSR_DR      0x01
#define LSR_THRE    0x20
#define MCR_DTR     0x01
#define MCR_RTS     0x02
#define MCR_OUT1    0x04
#define MCR_OUT2    0x08
#define MCR_LOOP    0x10
#define DEBUGCON    0xe9

static u8 kind = BOOTINFO_CONSOLE_NONE;

static void uart_setup(void)
{
	outb(COM1 + UART_IER, 0x00);          /* polled: no UART interrupts */
	outb(COM1 + UART_LCR, 0x80);          /* DLAB */
	outb(COM1 + UART_DLL, 0x01);          /* 115200 baud */
	outb(COM1 + UART_DLM, 0x00);
	outb(COM1 + UART_LCR, 0x03);          /* 8N1 */
	outb(COM1 + UART_FCR, 0xc7);          /* FIFO on, cleared, 14-byte trigger */
	outb(COM1 + UART_MCR, MCR_DTR | MCR_RTS);
}

static bool uart_probe(struct uart_probe_result *res)
{
	static const u8 scratch[2] = { 0x5a, 0xa5 };
	for (u32 i = 0; i < 2; i++) {
		outb(COM1 + UART_SCR, scratch[i]);
		u8 v = inb(COM1 + UART_SCR);
		if (v != scratch[i]) {
			res->failed_test = 1;
			res->value = v;
			return false;
		}
	}

	uart_setup();
	/* MCR loopback: a byte written to THR must come back on RBR. */
	outb(COM1 + UART_MCR, MCR_LOOP | MCR_OUT2 | MCR_OUT1 | MCR_RTS);
	for (u32 i = 0; i < 32 && (inb(COM1 + UART_LSR) & LSR_DR); i++)
		(void)inb(COM1 + UART_RBR);
	outb(COM1 + UART_THR, 0xae);
	bool got = false;
	for (u32 i = 0; i < 100000; i++) {
		if (inb(COM1 + UART_LSR) & LSR_DR) {
			got = true;
			break;
		}
	}
	u8 v = got ? inb(COM1 + UART_RBR) : 0xff;
	outb(COM1 + UART_MCR, MCR_DTR | MCR_RTS);
	if (!got || v != 0xae) {
		res->failed_test = 2;
		res->value = got ? v : 0x100; /* 0x100: no byte received */
		return false;
	}
	return true;
}

void console_init(struct uart_probe_result *res)
{
	res->ok = uart_probe(res);
	if (res->ok)
		kind = BOOTINFO_CONSOLE_COM1;
	else if (inb(DEBUGCON) == DEBUGCON)
		kind = BOOTINFO_CONSOLE_DEBUGCON;
	else
		kind = BOOTINFO_CONSOLE_NONE;
}

/* Used by the fatal paths when an exception hits before console_init. */
void console_force_com1(void)
{
	if (kind == BOOTINFO_CONSOLE_NONE) {
		uart_setup();
		kind = BOOTINFO_CONSOLE_COM1;
	}
}

u8 console_kind(void)
{
	return kind;
}

static void raw_putc(char c)
{
	if (kind == BOOTINFO_CONSOLE_COM1) {
		for (u32 i = 0; i < 100000; i++)
			if (inb(COM1 + UART_LSR) & LSR_THRE)
				break;
		outb(COM1 + UART_THR, (u8)c);
	} else if (kind == BOOTINFO_CONSOLE_DEBUGCON) {
		outb(DEBUGCON, (u8)c);
	}
}

void console_putc(char c)
{
	if (c == '\n')
		raw_putc('\r');
	raw_putc(c);
}

void console_puts(const char *s)
{
	while (*s)
		console_putc(*s++);
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
