/*
 * paging: ring-3 program, SYSCALL entry and the SYSRET/return plumbing.
 */
#define SYS_WRITE  1
#define SYS_REPORT 2
#define SYS_EXIT   3

/* ---- the user program: one page, mapped at a low user address; only
 *      RIP-relative references, so it runs wherever it is mapped ---------- */
    .section .text.user, "ax"
    .balign 4096
    .globl user_page_start, user_entry, user_probe
user_page_start:
user_entry:                     /* rdi = a supervisor-only address to probe */
    movq %rdi, %rbx
    leaq user_msg(%rip), %rsi
    movl $(user_msg_end - user_msg), %edx
    movl %cs, %edi              /* the kernel checks CPL = CS & 3 */
    movl $SYS_WRITE, %eax
    syscall
    xorl %eax, %eax
user_probe:
    movq (%rbx), %rax           /* 48 8b 03: must #PF (supervisor page) */
    movq %rax, %rdi             /* the kernel skipped it and set rax */
    movl $SYS_REPORT, %eax
    syscall
    movl $42, %edi
    movl $SYS_EXIT, %eax
    syscall
    ud2
user_msg:
    .ascii "hello from ring 3"
user_msg_end:
    .balign 4096
    .globl user_page_end
user_page_end:

/* ---- kernel side ---------------------------------------------------------- */
    .section .text
    .code64

/* uint64_t enter_user(uint64_t rip, uint64_t rsp, uint64_t arg)
 * SYSRETs to ring 3; returns when the user program calls SYS_EXIT. */
    .globl enter_user
enter_user:
    pushq %rbx
    pushq %rbp
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, kernel_ctx_rsp(%rip)
    movq %rdi, %rcx             /* user RIP */
    movl $0x002, %r11d          /* user RFLAGS: IF = 0 */
    movq %rsi, %rsp             /* user RSP */
    movq %rdx, %rdi             /* argument */
    xorl %eax, %eax
    xorl %ebx, %ebx
    xorl %edx, %edx
    xorl %esi, %esi
    xorl %ebp, %ebp
    xorl %r8d, %r8d
    xorl %r9d, %r9d
    xorl %r10d, %r10d
    xorl %r12d, %r12d
    xorl %r13d, %r13d
    xorl %r14d, %r14d
    xorl %r15d, %r15d
    sysretq

/* noreturn void user_return(uint64_t value): back to enter_user's caller. */
    .globl user_return
user_return:
    movq kernel_ctx_rsp(%rip), %rsp
    movq %rdi, %rax
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbp
    popq %rbx
    ret

/* IA32_LSTAR target. SYSCALL does not switch stacks: do it here. */
    .globl syscall_entry
syscall_entry:
    movq %rsp, user_rsp_save(%rip)
    leaq syscall_stack_top(%rip), %rsp
    pushq %rcx                  /* user RIP */
    pushq %r11                  /* user RFLAGS */
    movq %rax, %rcx             /* syscall_dispatch(a0, a1, a2, nr) */
    call syscall_dispatch
    popq %r11
    popq %rcx
    movq user_rsp_save(%rip), %rsp
    sysretq

    .section .bss
    .balign 16
kernel_ctx_rsp: .quad 0
user_rsp_save:  .quad 0
    .balign 16
syscall_stack:  .skip 16384
syscall_stack_top:

    .section .note.GNU-stack, "", @progbits
