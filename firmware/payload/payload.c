/*
 * Firmament test payload (next stage): validates the boot-info block,
 * prints a one-line deterministic summary (plus one line per POST error) on
 * the firmware's console and exits QEMU through isa-debug-exit (port 0xF4,
 * value 0 -> exit status 1). If the exit port does nothing it halts.
 */
#include "types.h"
#include "io.h"
#include "lib.h"
#include "bootinfo.h"

#define COM1 0x3f8
#define DEBUG_EXIT_PORT 0xf4

static u8 console = BOOTINFO_CONSOLE_COM1;

static void putc_raw(char c)
{
	if (console == BOOTINFO_CONSOLE_DEBUGCON) {
		outb(0xe9, (u8)c);
		return;
	}
	if (console != BOOTINFO_CONSOLE_COM1)
		return;
	for (u32 i = 0; i < 100000; i++)
		if (inb(COM1 + 5) & 0x20)
			break;
	outb(COM1, (u8)c);
}

static void putc_crlf(char c)
{
	if (c == '\n')
		putc_raw('\r');
	putc_raw(c);
}

static void print(const char *fmt, ...) PRINTF_LIKE(1, 2);
static void print(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fmt_vprintf(putc_crlf, fmt, ap);
	va_end(ap);
}

NORETURN static void finish(u8 value)
{
	/* The last byte is out only when TEMT is set (THRE rises earlier): exiting
	 * before that can lose the end of the transcript under QEMU. */
	for (u32 i = 0; console == BOOTINFO_CONSOLE_COM1 && i < 50000000 && !(inb(COM1 + 5) & 0x40); i++)
		__asm__ volatile("pause");
	outb(DEBUG_EXIT_PORT, value);   /* QEMU exits with status (value << 1) | 1 */
	halt_forever();
}

static void print_size(u64 bytes)
{
	if (bytes && (bytes & 0xfffff) == 0)
		print("%lu MiB", bytes >> 20);
	else
		print("%lu KiB", bytes >> 10);
}

void payload_main(u64 bootinfo_addr);
void payload_main(u64 bootinfo_addr)
{
	const struct bootinfo *bi = (const struct bootinfo *)(uintptr_t)bootinfo_addr;
	if (bootinfo_addr >= 0x100000000ull || bi->magic != BOOTINFO_MAGIC) {
		print("payload: bad boot-info magic at 0x%lx\n", bootinfo_addr);
		finish(1);
	}
	console = bi->console;
	if (bi->version != BOOTINFO_VERSION || bi->header_size < sizeof(*bi) ||
	    bi->e820_entry_size != sizeof(struct bootinfo_e820) ||
	    bi->error_entry_size != sizeof(struct bootinfo_error)) {
		print("payload: unsupported boot-info v%u (header %u bytes)\n", bi->version, bi->header_size);
		finish(1);
	}
	u32 sum = 0;
	for (u32 i = 0; i < bi->total_size; i++)
		sum += (i >= 0x0c && i < 0x10) ? 0 : ((const u8 *)bi)[i];
	if (sum != bi->checksum) {
		print("payload: boot-info checksum bad: stored 0x%x computed 0x%x\n", bi->checksum, sum);
		finish(1);
	}

	print("payload: boot-info v%u, ", bi->version);
	print_size(bi->ram_size);
	print(", %u CPU%s, %u e820 entries, POST flags 0x%x, last POST 0x%02X\n", bi->cpu_count,
	      bi->cpu_count == 1 ? "" : "s", bi->e820_count, bi->post_flags, bi->last_post_code);
	const struct bootinfo_error *err = (const struct bootinfo_error *)(uintptr_t)bi->errors_addr;
	for (u32 i = 0; i < bi->error_count; i++)
		print("payload: POST error 0x%02X details 0x%lx 0x%lx 0x%lx 0x%lx\n", err[i].code,
		      err[i].detail[0], err[i].detail[1], err[i].detail[2], err[i].detail[3]);
	finish(0);
}
