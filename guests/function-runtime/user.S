/*
 * Ring-3 entry and the way back. enter_user(rip, rsp, a0, a1, a2, a3) IRETQs
 * to the function with RDI..RCX = a0..a3, IF set, every other register zero
 * (no kernel value leaks into the function); user_return() (from a syscall,
 * fault or timer handler) goes back to enter_user's caller on the kernel stack.
 */
    .section .text
    .code64
    .globl enter_user
enter_user:
    pushq %rbx
    pushq %rbp
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, kernel_ctx_rsp(%rip)
    pushq $0x23                 /* SS: user data */
    pushq %rsi                  /* RSP */
    pushq $0x202                /* RFLAGS: IF */
    pushq $0x2b                 /* CS: user code64 */
    pushq %rdi                  /* RIP */
    movq %rdx, %rdi
    movq %rcx, %rsi
    movq %r8, %rdx
    movq %r9, %rcx
    xorl %eax, %eax
    xorl %ebx, %ebx
    xorl %ebp, %ebp
    xorl %r8d, %r8d
    xorl %r9d, %r9d
    xorl %r10d, %r10d
    xorl %r11d, %r11d
    xorl %r12d, %r12d
    xorl %r13d, %r13d
    xorl %r14d, %r14d
    xorl %r15d, %r15d
    iretq

    .globl user_return
user_return:
    movq kernel_ctx_rsp(%rip), %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbp
    popq %rbx
    ret

/* The saved kernel RSP lives in the private range (FN_KSTATE_PHYS, high-half view): no copy-on-write of .bss per clone. */
    .set kernel_ctx_rsp, 0xFFFFFFFF80219000

    .section .note.GNU-stack, "", @progbits
