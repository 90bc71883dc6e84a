/*
 * Firmament container runtime: system-call wrappers (docs/syscall-abi.md)
 * and small helpers. Containers are static x86-64 ELF executables linked
 * by lib/container.ld and started at _start (crt0.S) in ring 3 with
 * interrupts on, a 16 KiB stack and nothing else; main()'s return value is
 * the exit status (FM_EXIT_PASS / FM_EXIT_FAIL / FM_EXIT_FIXED).
 */
#ifndef FM_CONTAINER_H
#define FM_CONTAINER_H

#include "types.h"
#include "lib.h"
#include "syscall.h"

static inline long fm_syscall(long n, long a0, long a1, long a2, long a3)
{
	long ret;
	register long r10 __asm__("r10") = a3;
	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "a"(n), "D"(a0), "S"(a1), "d"(a2), "r"(r10)
			 : "rcx", "r11", "memory");
	return ret;
}

NORETURN static inline void fm_exit(int status)
{
	fm_syscall(SYS_EXIT, status, 0, 0, 0);
	for (;;)
		;
}

static inline u32 fm_in(u16 port, u32 width) { return (u32)fm_syscall(SYS_PORT_IN, port, width, 0, 0); }
static inline void fm_out(u16 port, u32 width, u32 v) { fm_syscall(SYS_PORT_OUT, port, width, v, 0); }
static inline u8 fm_inb(u16 port) { return (u8)fm_in(port, 1); }
static inline void fm_outb(u16 port, u8 v) { fm_out(port, 1, v); }
static inline void fm_outw(u16 port, u16 v) { fm_out(port, 2, v); }
static inline u64 fm_ticks(void) { return (u64)fm_syscall(SYS_TICKS, 0, 0, 0, 0); }
static inline long fm_fix(long kind, const u64 *args, long nargs) { return fm_syscall(SYS_REQUEST_FIX, kind, (long)args, nargs, 0); }
static inline long fm_ram_ranges(struct fm_ram_range *r, long max) { return fm_syscall(SYS_RAM_RANGES, (long)r, max, 0, 0); }
static inline long fm_brk(long incr) { return fm_syscall(SYS_BRK, incr, 0, 0, 0); }

/* printf-style log line (one SYS_LOG call, at most FM_LOG_MAX bytes). */
void fm_log(const char *fmt, ...) PRINTF_LIKE(1, 2);
/* Report a finding: severity FM_SEV_*, container-defined code, up to four
 * detail values (NULL = zeros), printf-style text. Returns the finding
 * number or a negative FM_E* error. */
long fm_finding(int severity, u32 code, const u64 *detail, const char *fmt, ...) PRINTF_LIKE(4, 5);
int fm_snprintf(char *buf, u32 size, const char *fmt, ...) PRINTF_LIKE(3, 4);

int main(void);

#endif
