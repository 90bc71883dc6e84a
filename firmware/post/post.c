/* POST codes (port 0x80), log lines and the error record kept for boot-info. */
#include "fw.h"

static u8 last_code;
static u32 flags;
static u32 nerrors, ndropped;
static struct bootinfo_error errors[BOOTINFO_MAX_ERRORS];

void post_code(u8 code)
{
	last_code = code;
	outb(0x80, code);
}

u8 post_last_code(void)
{
	return last_code;
}

static void vline(u8 code, const char *fmt, va_list ap)
{
	kprintf("[POST 0x%02X] ", code);
	kvprintf(fmt, ap);
	console_putc('\n');
}

void post_log(u8 code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vline(code, fmt, ap);
	va_end(ap);
}

void post_progress(u8 code, const char *fmt, ...)
{
	va_list ap;
	post_code(code);
	va_start(ap, fmt);
	vline(code, fmt, ap);
	va_end(ap);
}

static void record(u8 code, const u64 detail[4])
{
	const struct post_code_info *info = post_code_lookup(code);
	u32 flag = info ? info->flag_mask : 0;
	flags |= flag;
	if (nerrors >= BOOTINFO_MAX_ERRORS) {
		ndropped++;
		return;
	}
	struct bootinfo_error *e = &errors[nerrors++];
	e->code = code;
	e->severity = (info && info->severity == POST_SEV_FATAL) ? POST_SEVERITY_FATAL : POST_SEVERITY_ERROR;
	e->reserved = 0;
	e->flag = flag;
	for (u32 i = 0; i < 4; i++)
		e->detail[i] = detail ? detail[i] : 0;
}

void post_error(u8 code, const u64 detail[4], const char *fmt, ...)
{
	va_list ap;
	post_code(code);
	record(code, detail);
	va_start(ap, fmt);
	vline(code, fmt, ap);
	va_end(ap);
}

void post_fatal(u8 code, const u64 detail[4], const char *fmt, ...)
{
	va_list ap;
	post_code(code);
	record(code, detail);
	va_start(ap, fmt);
	vline(code, fmt, ap);
	va_end(ap);
	kprintf("[POST 0x%02X] halted\n", code);
	halt_forever();
}

u32 post_flags(void)
{
	return flags;
}

const struct bootinfo_error *post_errors(u32 *count, u32 *dropped)
{
	*count = nerrors;
	*dropped = ndropped;
	return errors;
}

void print_size(u64 bytes)
{
	if ((bytes & 0xfffff) == 0)
		kprintf("%lu MiB", bytes >> 20);
	else if ((bytes & 0x3ff) == 0)
		kprintf("%lu KiB", bytes >> 10);
	else
		kprintf("%lu bytes", bytes);
}
