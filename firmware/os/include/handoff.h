/*
 * Firmament handoff block (version 1): lightweight OS -> full-service
 * environment (hypervisor). Documented in docs/handoff-abi.md.
 *
 * The OS passes it by executing VMCALL with RAX = HANDOFF_VMCALL_RAX and
 * RBX = physical address of the block. All integers little-endian, every
 * address field a PHYSICAL address; the header and all four tables lie inside
 * [addr, addr + total_size). checksum: wrapping u32 sum of all total_size
 * bytes with the checksum field taken as 0 (same rule as the boot-info block).
 */
#ifndef FM_HANDOFF_H
#define FM_HANDOFF_H

#include "types.h"

#define HANDOFF_MAGIC       0x4F484D46u  /* bytes 'F','M','H','O' */
#define HANDOFF_VERSION     1
#define HANDOFF_VMCALL_RAX  0x4D524946u  /* 'FIRM' little-endian */

/* Memory-map types: the e820 values of the boot-info block plus one. */
#define HANDOFF_E820_USABLE   1
#define HANDOFF_E820_RESERVED 2
#define HANDOFF_E820_BAD      5        /* failed a memory test: firmware POST or fenced by a container */
#define HANDOFF_E820_OS       0x1000   /* held by the lightweight OS at handoff (image, stacks, page
                                          tables, this block); reclaimable once the block is consumed */

/* Container status. */
#define CSTATUS_PASS     1
#define CSTATUS_FAIL     2
#define CSTATUS_FIXED    3
#define CSTATUS_REJECTED 4
#define CSTATUS_TIMEOUT  5

/* Finding sources. */
#define FSOURCE_CONTAINER 0
#define FSOURCE_OS        1

/* Finding codes raised by the OS itself (source FSOURCE_OS). */
#define OSF_DIGEST_MISMATCH 0x0001  /* blob sha256 differs from its descriptor: kind, size, expected[0..7], actual[0..7] */
#define OSF_BLOB_INVALID    0x0002  /* blob missing, wrong size or malformed JSON: kind, size, expected size */
#define OSF_CONFIG_INVALID  0x0003  /* image config unusable (labels, entrypoint, diff_ids, grants) */
#define OSF_IMAGE_INVALID   0x0004  /* layer tar or container.elf rejected: reason, value */
#define OSF_PAGE_FAULT      0x0010  /* killed: fault address, error code, RIP */
#define OSF_EXCEPTION       0x0011  /* killed: vector, error code, RIP */
#define OSF_PORT_DENIED     0x0012  /* killed: port, width, direction (0 in, 1 out), RIP */
#define OSF_TIMEOUT         0x0013  /* killed: limit ms, elapsed ms */
#define OSF_BAD_SYSCALL     0x0014  /* killed: call number, RIP */
#define OSF_FIX_APPLIED     0x0015  /* info: kind, arg0, arg1, result */
#define OSF_FIX_DENIED      0x0016  /* warning: kind, arg0, arg1, error */
#define OSF_EXIT_STATUS     0x0017  /* exit status unknown, or FIXED without an applied fix: status */
#define OSF_MEMORY_LIMIT    0x0018  /* image does not fit org.firmament.memory: needed, limit */

/* Event kinds. */
#define EVENT_INDEX    0   /* opt/fm/oci/index.json (not content-addressed; measured as read) */
#define EVENT_MANIFEST 1
#define EVENT_CONFIG   2
#define EVENT_LAYER    3

#define HANDOFF_NO_CONTAINER 0xFFFFFFFFu

struct handoff_e820 {            /* = struct bootinfo_e820 */
	u64 base;
	u64 length;
	u32 type;
	u32 attr;                    /* bit 0 enabled, always 1 */
} PACKED;

struct handoff_container {
	char name[32];               /* 0x00 NUL-terminated ref name */
	u8 manifest_digest[32];      /* 0x20 sha256 of the manifest (from index.json) */
	u32 status;                  /* 0x40 CSTATUS_* */
	i32 exit_code;               /* 0x44 SYS_EXIT status, -1 when killed / never started */
	u32 first_finding;           /* 0x48 index into the findings table */
	u32 finding_count;           /* 0x4C */
	u32 fixes_applied;           /* 0x50 */
	u32 runtime_ms;              /* 0x54 timer ticks spent in the container (not deterministic) */
	u64 memory_limit;            /* 0x58 org.firmament.memory */
	u32 time_limit_ms;           /* 0x60 org.firmament.time-limit-ms */
	u32 grants;                  /* 0x64 GRANT_* bits */
	u32 first_event;             /* 0x68 index into the event table */
	u32 event_count;             /* 0x6C events measured for this container */
	u64 memory_used;             /* 0x70 peak bytes of image + stack + heap pages */
	u64 reserved;                /* 0x78 0 */
} PACKED;

#define GRANT_RAM_TEST 0x1
#define GRANT_FWCFG    0x2
#define GRANT_PORTS    0x4

struct handoff_finding {
	u32 container;               /* 0x00 index into the containers table */
	u8 severity;                 /* 0x04 FM_SEV_* */
	u8 source;                   /* 0x05 FSOURCE_* */
	u16 reserved0;               /* 0x06 */
	u32 code;                    /* 0x08 container-defined, or OSF_* when source = OS */
	u32 reserved1;               /* 0x0C */
	u64 detail[4];               /* 0x10 */
	char text[208];              /* 0x30 NUL-terminated */
} PACKED;

struct handoff_event {
	u32 index;                   /* 0x00 position in the log */
	u32 kind;                    /* 0x04 EVENT_* */
	u32 container;               /* 0x08 container index or HANDOFF_NO_CONTAINER */
	u32 size;                    /* 0x0C bytes measured */
	u8 digest[32];               /* 0x10 sha256 extended into the PCR */
	char description[48];        /* 0x30 NUL-terminated, e.g. "cmos layer" */
} PACKED;

struct handoff {
	u32 magic;                   /* 0x00 HANDOFF_MAGIC */
	u16 version;                 /* 0x04 1 */
	u16 header_size;             /* 0x06 0x100 */
	u32 total_size;              /* 0x08 */
	u32 checksum;                /* 0x0C */
	u64 bootinfo_addr;           /* 0x10 the firmware's boot-info block (still intact) */
	u32 result;                  /* 0x18 0 all containers pass/fixed, 1 any fail/timeout/rejected */
	u32 syscall_abi_version;     /* 0x1C FM_SYSCALL_ABI_VERSION */
	u64 memmap_addr;             /* 0x20 */
	u32 memmap_count;            /* 0x28 */
	u32 memmap_entry_size;       /* 0x2C 24 */
	u64 containers_addr;         /* 0x30 */
	u32 container_count;         /* 0x38 */
	u32 container_entry_size;    /* 0x3C 128 */
	u64 findings_addr;           /* 0x40 */
	u32 finding_count;           /* 0x48 */
	u32 finding_entry_size;      /* 0x4C 256 */
	u64 events_addr;             /* 0x50 */
	u32 event_count;             /* 0x58 */
	u32 event_entry_size;        /* 0x5C 96 */
	u8 pcr[32];                  /* 0x60 final PCR: pcr_0 = 0^32, pcr_i = sha256(pcr_{i-1} || digest_i) */
	u32 count_pass;              /* 0x80 */
	u32 count_fail;              /* 0x84 */
	u32 count_fixed;             /* 0x88 */
	u32 count_rejected;          /* 0x8C */
	u32 count_timeout;           /* 0x90 */
	u32 post_flags;              /* 0x94 boot-info post_flags as the firmware reported them */
	u32 post_flags_resolved;     /* 0x98 bits of post_flags a container's fix resolved */
	u32 findings_dropped;        /* 0x9C findings not recorded (table full) */
	u64 os_start;                /* 0xA0 physical range of the OS image */
	u64 os_end;                  /* 0xA8 */
	u64 os_cr3;                  /* 0xB0 the OS PML4 (live at VMCALL) */
	u64 uptime_ms;               /* 0xB8 OS timer at handoff (not deterministic) */
	u8 reserved[0x40];           /* 0xC0 0 */
} PACKED;

STATIC_ASSERT(sizeof(struct handoff) == 0x100, "handoff header");
STATIC_ASSERT(sizeof(struct handoff_e820) == 24, "handoff e820");
STATIC_ASSERT(sizeof(struct handoff_container) == 128, "handoff container");
STATIC_ASSERT(sizeof(struct handoff_finding) == 256, "handoff finding");
STATIC_ASSERT(sizeof(struct handoff_event) == 96, "handoff event");

#endif
