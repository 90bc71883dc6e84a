/*
 * Firmament guest support library: common API for 32-bit and 64-bit guests.
 *
 * Every guest implements guest_main(); the library's Multiboot entry sets up
 * the CPU (32-bit protected mode for i386 guests, long mode for x86_64
 * guests), initialises COM1, copies the Multiboot information into
 * boot_info, calls guest_main() and passes its return value to guest_exit().
 */
#ifndef FM_GUEST_H
#define FM_GUEST_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- exit codes (value written to the isa-debug-exit port 0xf4) ---------
 * QEMU turns a write of v into process exit status (v << 1) | 1. */
#define EXIT_OK          0 /* every check passed                        */
#define EXIT_CHECK_FAIL  1 /* a self-check found a wrong result          */
#define EXIT_BAD_CONFIG  2 /* bad command line option / not enough RAM   */
#define EXIT_EXCEPTION   3 /* unexpected CPU exception                   */
#define EXIT_BAD_BOOT    4 /* not started by a Multiboot loader          */
#define EXIT_NO_CPU_FEAT 5 /* CPU lacks a required feature (long mode)   */

#define DEBUG_EXIT_PORT 0xf4
#define COM1_PORT       0x3f8

#define MULTIBOOT_BOOTLOADER_MAGIC 0x2BADB002u

/* ---- port I/O ----------------------------------------------------------- */
static inline void outb(uint16_t port, uint8_t v) { __asm__ volatile("outb %0, %1" ::"a"(v), "Nd"(port)); }
static inline void outw(uint16_t port, uint16_t v) { __asm__ volatile("outw %0, %1" ::"a"(v), "Nd"(port)); }
static inline void outl(uint16_t port, uint32_t v) { __asm__ volatile("outl %0, %1" ::"a"(v), "Nd"(port)); }
static inline uint8_t inb(uint16_t port) { uint8_t v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline uint16_t inw(uint16_t port) { uint16_t v; __asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline uint32_t inl(uint16_t port) { uint32_t v; __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline void io_wait(void) { outb(0x80, 0); }

static inline void cpu_cli(void) { __asm__ volatile("cli" ::: "memory"); }
static inline void cpu_sti(void) { __asm__ volatile("sti" ::: "memory"); }
static inline void cpu_pause(void) { __asm__ volatile("pause" ::: "memory"); }
/* Enable interrupts and halt atomically (STI's interrupt shadow covers HLT). */
static inline void cpu_sti_hlt(void) { __asm__ volatile("sti; hlt" ::: "memory"); }
static inline void cpu_hlt(void) { __asm__ volatile("hlt" ::: "memory"); }

static inline void cpuid(uint32_t leaf, uint32_t sub, uint32_t *a, uint32_t *b, uint32_t *c, uint32_t *d)
{
    __asm__ volatile("cpuid" : "=a"(*a), "=b"(*b), "=c"(*c), "=d"(*d) : "a"(leaf), "c"(sub));
}

/* ---- Multiboot information, copied at boot --------------------------------- */
#define MBI_FLAG_MEMORY      (1u << 0)
#define MBI_FLAG_BOOTDEV     (1u << 1)
#define MBI_FLAG_CMDLINE     (1u << 2)
#define MBI_FLAG_MODS        (1u << 3)
#define MBI_FLAG_MMAP        (1u << 6)
#define MBI_FLAG_LOADER_NAME (1u << 9)

#define BOOT_MAX_MMAP    32
#define BOOT_CMDLINE_MAX 256

struct boot_mmap_entry {
    uint32_t size; /* the 'size' prefix as found in the MBI */
    uint64_t base;
    uint64_t length;
    uint32_t type;
};

struct boot_info {
    uint32_t magic;          /* EAX at entry */
    uint32_t mbi_phys;       /* EBX at entry */
    uint32_t flags;          /* MBI flags */
    uint32_t mem_lower;      /* KiB, valid if flags & MBI_FLAG_MEMORY */
    uint32_t mem_upper;      /* KiB */
    uint32_t boot_device;
    uint32_t mods_count;
    uint32_t mmap_count;     /* number of entries found (may exceed BOOT_MAX_MMAP) */
    uint32_t mmap_bytes;     /* mmap_length */
    struct boot_mmap_entry mmap[BOOT_MAX_MMAP];
    bool cmdline_truncated;
    char cmdline[BOOT_CMDLINE_MAX]; /* full command line, NUL-terminated ("" if none) */
};

extern struct boot_info boot_info;

/* Library entry, called by the architecture's _start with EAX and EBX. */
__attribute__((noreturn)) void boot_main(uint32_t magic, uint32_t mbi);

/* Implemented by each guest. Its return value is the exit code. */
int guest_main(struct boot_info *bi);

/* ---- console (COM1, 115200 8N1, "\n" is sent as "\r\n") --------------------- */
void serial_init(void);
void serial_putc(char c);
void serial_drain(void);
void kputs(const char *s);                 /* no newline added */
void kwrite(const char *s, size_t len);
void kprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void kvprintf(const char *fmt, va_list ap);
void put_hex(uint64_t v, int digits);      /* "0x" + at least `digits` digits */
void put_dec(uint64_t v);

/* ---- exit ------------------------------------------------------------------- */
__attribute__((noreturn)) void guest_exit(uint32_t code);
__attribute__((noreturn)) void guest_panic(uint32_t code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define CHECK(cond, ...) do { if (!(cond)) guest_panic(EXIT_CHECK_FAIL, __VA_ARGS__); } while (0)

/* ---- command line: space separated key=value tokens ---------------------------
 * Tokens without '=' (QEMU puts the kernel file name first) are ignored. */
bool cmdline_get(const char *cmdline, const char *key, const char **val, size_t *len);
/* Parses a decimal (or 0x hex) value. Returns 0 if absent (sets *out=dflt),
 * 1 if present and valid, -1 if present but malformed. */
int cmdline_get_u32(const char *cmdline, const char *key, uint32_t dflt, uint32_t *out);

/* ---- freestanding libc subset (gcc may emit calls to these) ----------------- */
void *memcpy(void *dst, const void *src, size_t n);
void *memmove(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
int strncmp(const char *a, const char *b, size_t n);

#endif
