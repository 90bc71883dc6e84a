/* Internal interfaces of the Firmament lightweight OS. */
#ifndef FM_OS_H
#define FM_OS_H

#include "types.h"
#include "io.h"
#include "lib.h"
#include "bootinfo.h"
#include "elf64.h"
#include "handoff.h"
#include "syscall.h"

#define OS_VERSION "0.1"

/* ---- address space ---- */
#define KERNEL_VMA   0xFFFFFFFF80000000ul   /* kernel image: virtual = KERNEL_VMA + physical */
#define PHYS_MAP     0xFFFF800000000000ul   /* direct map of physical 0-4 GiB (supervisor, NX) */
#define PHYS_MAP_SIZE 0x100000000ul
#define PAGE_SIZE    0x1000ul
#define PAGE_MASK    (~(PAGE_SIZE - 1))

static inline void *phys_to_virt(u64 p) { return (void *)(uintptr_t)(PHYS_MAP + p); }
static inline u64 virt_to_phys(const void *v)
{
	u64 a = (u64)(uintptr_t)v;
	return a >= KERNEL_VMA ? a - KERNEL_VMA : a - PHYS_MAP;
}

/* GDT selectors (SYSCALL/SYSRET need this order). */
#define SEL_KCODE   0x08
#define SEL_KDATA   0x10
#define SEL_UCODE32 0x18
#define SEL_UDATA   0x20
#define SEL_UCODE   0x28
#define SEL_TSS     0x30

/* ---- console (console.c) ---- */
void console_init(u8 kind);
void console_putc(char c);
void console_drain(void);
void kprintf(const char *fmt, ...) PRINTF_LIKE(1, 2);
void kvprintf(const char *fmt, va_list ap);
int ksnprintf(char *buf, u32 size, const char *fmt, ...) PRINTF_LIKE(3, 4);
int kvsnprintf(char *buf, u32 size, const char *fmt, va_list ap);
void print_hex_bytes(const u8 *p, u32 n);

/* ---- exit (main.c) ---- */
#define EXIT_OK       0x00   /* QEMU status 1 */
#define EXIT_FAILURES 0x10   /* QEMU status 0x21 */
#define EXIT_PANIC    0x3e   /* QEMU status 0x7d */
NORETURN void os_exit(u8 value);
NORETURN void panic(const char *fmt, ...) PRINTF_LIKE(1, 2);

/* ---- CPU setup (cpu.c, arch/entry.S, arch/isr.S) ---- */
struct int_frame {
	u64 r15, r14, r13, r12, r11, r10, r9, r8;
	u64 rbp, rdi, rsi, rdx, rcx, rbx, rax;
	u64 vector, error;
	u64 rip, cs, rflags, rsp, ss;
};
void cpu_init(void);                  /* GDT, TSS, IDT, SYSCALL MSRs */
void cpu_io_grant(u16 lo, u16 hi);    /* open ports lo..hi to ring 3 in the TSS I/O bitmap */
void cpu_io_revoke_all(void);         /* close every port to ring 3 */
extern bool cpu_has_nx;
extern u64 trap_stack_top;            /* TSS.RSP0, also used by syscall_entry */
void interrupt_dispatch(struct int_frame *f);
void syscall_dispatch(struct int_frame *f);
extern const char handoff_vmcall_insn[];
u64 handoff_vmcall(u64 rax, u64 rbx);  /* VMCALL; returns RAX if a hypervisor resumes us */

struct kctx { u64 rsp; };
/* Enter ring 3 at rip/rsp with CR3 = cr3; returns the value given to user_return(). */
u64 user_enter(struct kctx *ctx, u64 rip, u64 rsp, u64 cr3);
NORETURN void user_return(struct kctx *ctx, u64 value);

/* ---- timer (timer.c) ---- */
#define TIMER_HZ 1000
#define PIT_DIVISOR 1193
#define VEC_LAPIC_TIMER 0x40
void timer_init(void);
bool timer_uses_lapic(void);
void timer_lapic_eoi(void);
void timer_program_pit(void);
void timer_irq(bool from_user);
u64 timer_ms(void);

/* ---- physical frames (mm.c) ---- */
void mm_init(const struct bootinfo *bi, const struct bootinfo_e820 *e820, u32 n);
u64 frame_alloc(void);                /* zeroed 4 KiB frame, 0 when out of memory */
u64 frame_alloc_contig(u32 count);    /* contiguous, NOT zeroed */
void frame_free(u64 phys);
void frame_free_contig(u64 phys, u32 count);
bool frame_is_free(u64 phys);
u64 frames_free_count(void);
u64 frames_total(void);
bool frame_claim(u64 phys);           /* take one specific free frame (ram-test lending) */
void frame_fence(u64 phys);           /* permanently withheld (bad RAM) */
u32 mm_fenced_ranges(u64 *base, u64 *len, u32 max);
u32 mm_build_handoff_map(struct handoff_e820 *out, u32 max);
u64 mm_ram_top(void);

/* ---- paging (paging.c) ---- */
#define PTE_P    0x001ul
#define PTE_W    0x002ul
#define PTE_U    0x004ul
#define PTE_PWT  0x008ul
#define PTE_PCD  0x010ul
#define PTE_PS   0x080ul
#define PTE_OWNED 0x200ul                /* software bit: frame belongs to the address space */
#define PTE_NX   0x8000000000000000ul
#define PTE_ADDR 0x000ffffffffff000ul
void paging_init(u64 kernel_phys_start, u64 kernel_phys_end);
u64 kernel_cr3(void);
u64 as_create(void);                   /* new PML4 (physical), kernel half shared */
bool as_map(u64 pml4, u64 va, u64 pa, u64 flags);
u64 *as_lookup(u64 pml4, u64 va);      /* leaf PTE or NULL */
void as_destroy(u64 pml4);             /* frees page tables and PTE_OWNED frames */
static inline void write_cr3(u64 v) { __asm__ volatile("mov %0, %%cr3" : : "r"(v) : "memory"); }

/* ---- SHA-256 (sha256.c) ---- */
struct sha256_ctx {
	u32 h[8];
	u64 len;
	u8 buf[64];
	u32 fill;
};
void sha256_init(struct sha256_ctx *c);
void sha256_update(struct sha256_ctx *c, const void *data, u64 len);
void sha256_final(struct sha256_ctx *c, u8 out[32]);
void sha256(const void *data, u64 len, u8 out[32]);
int sha256_selftest(void);             /* number of failed vectors */
#define SHA256_SELFTEST_VECTORS 5

/* ---- JSON (json.c) ---- */
enum { JSON_OBJECT = 1, JSON_ARRAY, JSON_STRING, JSON_PRIMITIVE };
struct jtok {
	u8 type;
	u32 start, end;     /* [start, end) in the text; strings without the quotes */
	u32 size;           /* children: members of an object, elements of an array */
};
int json_parse(const char *s, u32 len, struct jtok *t, u32 max);   /* token count, < 0 on error */
int json_get(const char *s, const struct jtok *t, int n, int obj, const char *key);
int json_index(const struct jtok *t, int n, int arr, u32 idx);
bool json_eq(const char *s, const struct jtok *t, int i, const char *lit);
bool json_str(const char *s, const struct jtok *t, int i, char *out, u32 max);
bool json_u64(const char *s, const struct jtok *t, int i, u64 *out);

/* ---- fw_cfg (fwcfg.c) ---- */
bool fwcfg_init(void);
bool fwcfg_find(const char *name, u16 *select, u32 *size);
bool fwcfg_read(u16 key, void *dst, u32 len);

/* ---- measured boot (events.c) ---- */
u32 event_extend(u32 kind, u32 container, const u8 digest[32], u32 size, const char *desc);
const u8 *event_pcr(void);
u32 event_count(void);
const struct handoff_event *event_table(void);

/* ---- containers (oci.c, runtime.c) ---- */
#define MAX_CONTAINERS 16
#define MAX_FINDINGS   160
#define MAX_PORT_GRANTS 8
struct container {
	struct handoff_container *rec;
	u32 index;
	/* config */
	u32 grants;
	u32 nports;
	u16 port_lo[MAX_PORT_GRANTS], port_hi[MAX_PORT_GRANTS];
	char purpose[64];
	/* runtime */
	u64 pml4;
	u64 entry;
	u64 heap_end;
	u64 pages_used, pages_peak;
	u32 nranges;
	struct fm_ram_range ranges[32];
	u64 start_ms, deadline_ms;
	u32 log_lines;
	u32 own_findings;
	struct kctx ctx;
};
void oci_run_all(void);
struct container *current_container(void);
u32 report_finding(struct container *c, u8 severity, u8 source, u32 code, const u64 detail[4],
		   const char *fmt, ...) PRINTF_LIKE(6, 7);
void runtime_run(struct container *c, const u8 *elf, u64 elf_size);
NORETURN void container_kill(struct container *c, u32 status_hint);

/* ---- report / handoff (report.c) ---- */
extern struct handoff_container containers_tab[MAX_CONTAINERS];
extern u32 container_count;
extern struct handoff_finding findings_tab[MAX_FINDINGS];
extern u32 finding_count, findings_dropped;
extern u32 post_flags_resolved;
extern const struct bootinfo *boot_info;
extern u64 boot_info_phys;
const char *status_name(u32 status);
NORETURN void report_and_handoff(void);

#endif
