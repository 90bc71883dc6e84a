/*
 * Firmament lightweight OS <-> container system-call ABI (version 1).
 * Shared by the OS (firmware/os) and the container runtime
 * (firmware/containers/lib). Documented in docs/syscall-abi.md.
 *
 * Calling convention (x86-64 SYSCALL, Linux-like):
 *   RAX = call number; arguments in RDI, RSI, RDX, R10, R8, R9;
 *   result in RAX (>= 0 success, negative FM_E* error);
 *   RCX and R11 are clobbered (SYSCALL/SYSRET use them), every other
 *   register is preserved.
 */
#ifndef FM_SYSCALL_H
#define FM_SYSCALL_H

#define FM_SYSCALL_ABI_VERSION 1

/* Call numbers. */
#define SYS_EXIT            0  /* exit(status): never returns */
#define SYS_LOG             1  /* log(text, len) -> bytes logged */
#define SYS_PORT_IN         2  /* port_in(port, width) -> value */
#define SYS_PORT_OUT        3  /* port_out(port, width, value) -> 0 */
#define SYS_REPORT_FINDING  4  /* report_finding(severity, code, text, details[4]) -> finding index */
#define SYS_REQUEST_FIX     5  /* request_fix(kind, args, nargs) -> kind-specific result */
#define SYS_RAM_RANGES      6  /* ram_ranges(buf, max) -> number of ranges (ram-test grant) */
#define SYS_TICKS           7  /* ticks() -> milliseconds since the OS started its timer */
#define SYS_BRK             8  /* brk(increment) -> previous heap end (sbrk semantics) */
#define SYS_COUNT           9

/* Errors (returned negated in RAX). */
#define FM_EPERM   1   /* grant missing / not allowed for this container */
#define FM_EINVAL  2   /* bad argument (width, alignment, kind, severity...) */
#define FM_EFAULT  3   /* pointer argument not readable/writable user memory */
#define FM_ENOMEM  4   /* memory limit (org.firmament.memory) reached */
#define FM_ENOSYS  5   /* unknown call number */
#define FM_ELIMIT  6   /* per-container limit reached (findings, fixes) */
#define FM_EIO     7   /* the fix was attempted but did not verify */

/* Exit statuses a container returns (SYS_EXIT). */
#define FM_EXIT_PASS   0   /* nothing wrong */
#define FM_EXIT_FAIL   1   /* a problem was found and is not resolved */
#define FM_EXIT_FIXED  2   /* a problem was found and resolved by a fix the OS applied */

/* Finding severities (SYS_REPORT_FINDING). */
#define FM_SEV_INFO     0
#define FM_SEV_WARNING  1
#define FM_SEV_ERROR    2
#define FM_SEV_CRITICAL 3

/* Limits. */
#define FM_LOG_MAX          200   /* bytes per SYS_LOG call (longer text is truncated) */
#define FM_FINDING_TEXT_MAX 207   /* characters of finding text kept (plus NUL) */
#define FM_CONTAINER_FINDINGS 6   /* findings a container may report itself */

/* Fix kinds (SYS_REQUEST_FIX). */
#define FIX_FENCE_RAM      1  /* args: {phys base, length}; grant ram-test; page-aligned,
                                 inside the ranges given to this container -> 0 */
#define FIX_CMOS_CHECKSUM  2  /* args: none; grant on ports 0x70-0x71; the OS recomputes
                                 the sum of CMOS 0x10-0x2D, writes 0x2E/0x2F and reads it
                                 back -> the new checksum */

/* SYS_RAM_RANGES element. */
struct fm_ram_range {
	unsigned long phys;        /* physical base (page-aligned) */
	unsigned long virt;        /* where it is mapped in the container (user, RW) */
	unsigned long length;      /* bytes (multiple of 4096) */
};

/* Container address-space layout (user half; everything else is unmapped
 * or supervisor-only). */
#define FM_USER_IMAGE_MIN   0x0000000000010000ul
#define FM_USER_IMAGE_MAX   0x0000000040000000ul  /* PT_LOAD segments must fit below */
#define FM_USER_HEAP_BASE   0x0000000040000000ul  /* SYS_BRK heap grows up from here */
#define FM_USER_HEAP_MAX    0x0000000080000000ul
#define FM_USER_RAMTEST     0x0000000100000000ul  /* SYS_RAM_RANGES window */
#define FM_USER_STACK_TOP   0x00007ffffffff000ul
#define FM_USER_STACK_SIZE  0x4000ul

#endif
