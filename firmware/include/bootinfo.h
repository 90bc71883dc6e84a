/*
 * Firmament boot-info block (version 1): the firmware -> next stage contract.
 * Documented in docs/boot-info.md; parsed in TypeScript by
 * machine/platform/boot-info.ts. All integers little-endian. Every address
 * field is a PHYSICAL address (the next stage runs under the firmware's
 * identity map, so physical == virtual below 4 GiB).
 */
#ifndef FW_BOOTINFO_H
#define FW_BOOTINFO_H

#include "types.h"

#define BOOTINFO_MAGIC        0x49424D46u /* bytes 'F','M','B','I' */
#define BOOTINFO_VERSION      1
#define BOOTINFO_MAX_E820     32
#define BOOTINFO_MAX_ERRORS   16

#define BOOTINFO_CONSOLE_NONE     0
#define BOOTINFO_CONSOLE_COM1     1
#define BOOTINFO_CONSOLE_DEBUGCON 2

#define E820_USABLE    1
#define E820_RESERVED  2
#define E820_BAD       5

#define POST_SEVERITY_ERROR 1
#define POST_SEVERITY_FATAL 2

struct bootinfo_e820 {
	u64 base;
	u64 length;
	u32 type;     /* 1 usable, 2 reserved, 5 bad/unusable */
	u32 attr;     /* ACPI 3.0 extended attributes: bit 0 = enabled (always 1) */
} PACKED;

struct bootinfo_error {
	u8 code;      /* POST code, 0xE0-0xEF */
	u8 severity;  /* 1 error, 2 fatal */
	u16 reserved;
	u32 flag;     /* the bit this error sets in post_flags */
	u64 detail[4];/* per-code detail values, see docs/post-codes.md */
} PACKED;

struct bootinfo {
	u32 magic;            /* 0x00 BOOTINFO_MAGIC */
	u16 version;          /* 0x04 1 */
	u16 header_size;      /* 0x06 sizeof(struct bootinfo) = 0x70 */
	u32 total_size;       /* 0x08 header + e820 table + error table */
	u32 checksum;         /* 0x0C wrapping u32 sum of all total_size bytes, this field taken as 0 */
	u64 ram_size;         /* 0x10 total RAM in bytes (below + above 4 GiB) */
	u64 ram_top_below_4g; /* 0x18 end of RAM below 4 GiB (exclusive) */
	u64 ram_above_4g;     /* 0x20 RAM bytes mapped from 4 GiB up */
	u32 cpu_count;        /* 0x28 fw_cfg NB_CPUS (1 without fw_cfg) */
	u32 post_flags;       /* 0x2C one bit per failed POST check */
	u8 last_post_code;    /* 0x30 last code written to port 0x80 (0x5F on handoff) */
	u8 console;           /* 0x31 0 none, 1 COM1, 2 debugcon 0xE9 */
	u16 reserved0;        /* 0x32 0 */
	u32 e820_count;       /* 0x34 */
	u64 e820_addr;        /* 0x38 physical address of the e820 table */
	u32 e820_entry_size;  /* 0x40 24 */
	u32 error_count;      /* 0x44 */
	u64 errors_addr;      /* 0x48 physical address of the error table */
	u32 error_entry_size; /* 0x50 40 */
	u32 errors_dropped;   /* 0x54 errors not recorded because the table was full */
	u64 next_stage_entry; /* 0x58 physical entry point jumped to */
	u64 next_stage_start; /* 0x60 lowest loaded physical address */
	u64 next_stage_end;   /* 0x68 end of the highest loaded segment (exclusive) */
} PACKED;

STATIC_ASSERT(sizeof(struct bootinfo) == 0x70, "boot-info header size");
STATIC_ASSERT(sizeof(struct bootinfo_e820) == 24, "e820 entry size");
STATIC_ASSERT(sizeof(struct bootinfo_error) == 40, "error entry size");

#endif
