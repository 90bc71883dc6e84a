/* Container runtime helpers (see fm.h). */
#include "fm.h"

static char *out_buf;
static u32 out_size, out_len;

static void out_putc(char c)
{
	if (out_len + 1 < out_size)
		out_buf[out_len] = c;
	out_len++;
}

static int vformat(char *buf, u32 size, const char *fmt, va_list ap)
{
	out_buf = buf;
	out_size = size;
	out_len = 0;
	fmt_vprintf(out_putc, fmt, ap);
	u32 n = out_len < size ? out_len : size - 1;
	buf[n] = 0;
	return (int)n;
}

int fm_snprintf(char *buf, u32 size, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vformat(buf, size, fmt, ap);
	va_end(ap);
	return n;
}

void fm_log(const char *fmt, ...)
{
	char buf[FM_LOG_MAX + 1];
	va_list ap;
	va_start(ap, fmt);
	int n = vformat(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	fm_syscall(SYS_LOG, (long)buf, n, 0, 0);
}

long fm_finding(int severity, u32 code, const u64 *detail, const char *fmt, ...)
{
	char buf[FM_FINDING_TEXT_MAX + 1];
	va_list ap;
	va_start(ap, fmt);
	vformat(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	return fm_syscall(SYS_REPORT_FINDING, severity, code, (long)buf, (long)detail);
}
