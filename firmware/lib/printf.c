/* Tiny deterministic printf used by the firmware log and the payload. */
#include "lib.h"

static void put_num(fmt_putc_fn putc, u64 v, unsigned base, bool upper, bool neg,
		    int width, bool zero, bool left)
{
	char buf[24];
	int n = 0;
	const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
	do {
		buf[n++] = digits[v % base];
		v /= base;
	} while (v);
	int len = n + (neg ? 1 : 0);
	if (!left && !zero)
		for (int i = len; i < width; i++)
			putc(' ');
	if (neg)
		putc('-');
	if (!left && zero)
		for (int i = len; i < width; i++)
			putc('0');
	while (n)
		putc(buf[--n]);
	if (left)
		for (int i = len; i < width; i++)
			putc(' ');
}

void fmt_vprintf(fmt_putc_fn putc, const char *fmt, va_list ap)
{
	for (; *fmt; fmt++) {
		if (*fmt != '%') {
			putc(*fmt);
			continue;
		}
		fmt++;
		bool zero = false, left = false;
		for (;; fmt++) {
			if (*fmt == '0')
				zero = true;
			else if (*fmt == '-')
				left = true;
			else
				break;
		}
		int width = 0;
		while (*fmt >= '0' && *fmt <= '9')
			width = width * 10 + (*fmt++ - '0');
		int lng = 0;
		while (*fmt == 'l' || *fmt == 'z') {
			lng = 1;
			fmt++;
		}
		switch (*fmt) {
		case '\0':
			return;
		case '%':
			putc('%');
			break;
		case 'c':
			putc((char)va_arg(ap, int));
			break;
		case 's': {
			const char *s = va_arg(ap, const char *);
			if (!s)
				s = "(null)";
			int len = (int)strlen(s);
			if (!left)
				for (int i = len; i < width; i++)
					putc(' ');
			while (*s)
				putc(*s++);
			if (left)
				for (int i = len; i < width; i++)
					putc(' ');
			break;
		}
		case 'd':
		case 'i': {
			i64 v = lng ? va_arg(ap, i64) : va_arg(ap, int);
			bool neg = v < 0;
			put_num(putc, neg ? (u64)0 - (u64)v : (u64)v, 10, false, neg, width, zero, left);
			break;
		}
		case 'u':
			put_num(putc, lng ? va_arg(ap, u64) : va_arg(ap, unsigned), 10, false, false, width, zero, left);
			break;
		case 'x':
		case 'X':
			put_num(putc, lng ? va_arg(ap, u64) : va_arg(ap, unsigned), 16, *fmt == 'X', false, width, zero, left);
			break;
		case 'p':
			putc('0');
			putc('x');
			put_num(putc, (u64)(uintptr_t)va_arg(ap, void *), 16, false, false, width, zero, left);
			break;
		default:
			putc('%');
			putc(*fmt);
			break;
		}
	}
}
