/*
 * The function runtime's host ABI (docs/functions.md): guest-physical layout,
 * the mailbox the host and the runtime share, hypercall numbers and status
 * codes. vmm/functions/abi.ts mirrors every number here.
 */
#ifndef FN_ABI_H
#define FN_ABI_H

#include <stdint.h>

/* Hypercalls (docs/hypercalls.md, 16-31 belong to the function service). */
#define HC_FN_READY 16u     /* RBX = ABI version; the host snapshots the runtime here */
#define HC_FN_WAIT 17u      /* the VM sleeps until the host writes an invocation into the mailbox */
#define HC_FN_RESPOND 18u   /* RBX = invocation sequence number; the response is in the mailbox */
#define HC_FN_USER_ENTER 19u /* the next instruction is the function's first (timing) */
#define HC_FN_EXTERNAL 20u  /* the external request is staged; the host parks the VM and resumes it with the answer */
#define FN_ABI_VERSION 1u

/* Guest-physical layout (the private writable range is 0x200000 + 2 MiB). */
#define FN_PRIVATE_PHYS 0x200000ull
#define FN_PRIVATE_BYTES 0x200000ull
#define FN_TABLES_PHYS 0x200000ull   /* PML4, PDPT/PD high half, user PDPT, PD, 2 PTs */
#define FN_KSTACK_TOP 0x214000ull    /* kernel stack 0x210000-0x214000 */
#define FN_ISTACK_TOP 0x218000ull    /* ring-3 interrupt stack (TSS RSP0) 0x214000-0x218000 */
#define FN_MAILBOX_PHYS 0x218000ull
#define FN_KSTATE_PHYS 0x219000ull
#define FN_ELF_PHYS 0x220000ull      /* the function's ELF file as uploaded */
#define FN_ELF_MAX 0x80000u
#define FN_BODY_PHYS 0x2A0000ull     /* request body */
#define FN_OUT_PHYS 0x2B0000ull      /* response body */
#define FN_IO_MAX 0x10000u
#define FN_EXT_PHYS 0x2C0000ull      /* external call: URL then body out, the answer back */
#define FN_EXT_URL_MAX 2048u
#define FN_USTACK_PHYS 0x2D0000ull   /* user stack, 64 KiB */
#define FN_USER_PHYS 0x300000ull     /* the function's segments, 1 MiB */

/* User virtual layout. */
#define FN_USER_BASE 0x400000ull
#define FN_USER_LIMIT 0x500000ull
#define FN_UIN_VA 0x600000ull
#define FN_UOUT_VA 0x700000ull
#define FN_USTACK_VA 0x7F0000ull
#define FN_USTACK_TOP 0x800000ull

#define FN_MAILBOX_MAGIC 0x424d4e46u /* "FNMB" */

/* Invocation outcome (mailbox.status). */
#define FN_OK 0u
#define FN_FAULT 1u
#define FN_TIMEOUT 2u
#define FN_BAD_ELF 3u
#define FN_BAD_SYSCALL 4u
#define FN_TOO_BIG 5u
#define FN_FN_ERROR 6u /* the function returned a negative value */

/* User syscalls: INT 0x80, RAX = number, arguments RDI RSI RDX R10 R8 R9. */
#define FN_SYS_EXIT 0u     /* RDI = response length (in the output buffer) */
#define FN_SYS_EXTERNAL 1u /* url, url_len, body, body_len, resp, resp_cap -> length, or < 0 */

struct fn_mailbox {
    uint32_t magic;
    uint32_t seq;          /* host: invocation number (a new value = new work) */
    uint32_t elf_len;
    uint32_t body_len;
    uint32_t limit_ms;     /* run-time limit of the user code, virtual ms */
    uint32_t done_seq;     /* runtime: the last invocation answered */
    uint32_t status;       /* runtime: FN_* */
    uint32_t resp_len;
    uint64_t fault_vector;
    uint64_t fault_addr;   /* CR2 of a #PF */
    uint64_t fault_rip;
    uint32_t ext_url_len;  /* runtime -> host */
    uint32_t ext_body_len;
    uint32_t ext_status;   /* host -> runtime: HTTP status, 0 = not reached */
    uint32_t ext_resp_len;
    uint32_t ready;        /* runtime: ABI version once initialised */
    uint32_t user_pages;   /* runtime: pages the last function mapped */
};

#endif
