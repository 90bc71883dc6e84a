/* Internal interfaces of the Firmament POST code. */
#ifndef FW_FW_H
#define FW_FW_H

#include "types.h"
#include "io.h"
#include "lib.h"
#include "layout.h"
#include "bootinfo.h"
#include "post_codes.h"

/* ---- console (console.c) ---- */
struct uart_probe_result {
	bool ok;
	u32 failed_test;   /* 1 scratch register, 2 MCR loopback */
	u32 value;         /* value read back */
};
void console_init(struct uart_probe_result *res);
void console_force_com1(void);
u8 console_kind(void);
void console_putc(char c);
void console_puts(const char *s);
void kprintf(const char *fmt, ...) PRINTF_LIKE(1, 2);
void kvprintf(const char *fmt, va_list ap);

/* ---- POST codes and error records (post.c) ---- */
void post_code(u8 code);                 /* port 0x80 only */
u8 post_last_code(void);
void post_log(u8 code, const char *fmt, ...) PRINTF_LIKE(2, 3);          /* log line only */
void post_progress(u8 code, const char *fmt, ...) PRINTF_LIKE(2, 3);     /* port 0x80 + line */
void post_error(u8 code, const u64 detail[4], const char *fmt, ...) PRINTF_LIKE(3, 4);
NORETURN void post_fatal(u8 code, const u64 detail[4], const char *fmt, ...) PRINTF_LIKE(3, 4);
u32 post_flags(void);
const struct bootinfo_error *post_errors(u32 *count, u32 *dropped);
void print_size(u64 bytes);              /* "64 MiB", "640 KiB", "123 bytes" */

/* ---- interrupts (interrupts.c, isr.S) ---- */
struct int_frame {
	u64 r15, r14, r13, r12, r11, r10, r9, r8;
	u64 rbp, rdi, rsi, rdx, rcx, rbx, rax;
	u64 vector, error;
	u64 rip, cs, rflags, rsp, ss;
};
void interrupt_dispatch(struct int_frame *f);
extern volatile u32 timer_ticks;
extern volatile u32 guard_fired;

/* ---- platform devices (platform.c) ---- */
void pic_init(void);
void pic_unmask_irq(u8 irq);
void pic_mask_all(void);
bool lapic_present(void);
u64 lapic_base(void);
void lapic_init(void);
void lapic_guard_arm(u32 count);
void lapic_guard_disarm(void);
void lapic_eoi(void);
u8 cmos_read(u8 reg);

/* ---- fw_cfg (fwcfg.c) ---- */
bool fwcfg_probe(u32 *signature);
bool fwcfg_present(void);
bool fwcfg_has_dma(void);
void fwcfg_read_key(u16 key, void *buf, u32 len);
bool fwcfg_find_file(const char *name, u16 *select, u32 *size);
bool fwcfg_read_at(u16 key, u32 offset, void *dst, u32 len);

/* ---- memory map (memmap.c) ---- */
struct memmap {
	u32 count;
	struct bootinfo_e820 e[BOOTINFO_MAX_E820];
};
void memmap_init(struct memmap *m);
bool memmap_set(struct memmap *m, u64 base, u64 length, u32 type);
bool memmap_range_is(const struct memmap *m, u64 base, u64 length, u32 type);
const char *e820_type_name(u32 type);

/* ---- memory test (memtest.c) ---- */
#define MEMTEST_MAX_RANGES 8
struct memtest_range {
	u64 base, end;          /* page-aligned, end exclusive */
	u64 first_bad;          /* first failing qword detected in the range */
	u64 expected, actual;   /* value written / value read back there */
	u32 order;              /* detection order, internal */
};
struct memtest_result {
	u32 count;
	bool overflow;          /* more disjoint bad ranges than MEMTEST_MAX_RANGES */
	struct memtest_range r[MEMTEST_MAX_RANGES];
};
void memtest_run(u64 start, u64 end, struct memtest_result *res);

/* ---- next stage (loader.c) ---- */
struct next_stage {
	u64 entry, start, end;
	u32 segments;
};
void load_next_stage(const struct memmap *m, struct next_stage *ns);

/* ---- entry/handoff (entry.S) ---- */
NORETURN void fw_handoff(u64 entry, u64 bootinfo);
NORETURN void fw_main(void);
NORETURN void fw_next_stage_returned(u64 rax);

#endif
