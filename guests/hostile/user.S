/*
 * hostile: the ring-3 side. Each probe sets R14 = probe id and R15 = where to
 * resume; the kernel's #GP/#UD handler records the fault and resumes there.
 * Only RIP-relative references: the code runs at its identity-mapped
 * (physical) address with U set on that mapping.
 */
    .section .text
    .code64

.macro PROBE id, insn:vararg
    movl $\id, %r14d
    leaq 9f(%rip), %r15
    \insn
9:
.endm

    .balign 16
    .globl user_phase_iopl0
user_phase_iopl0:               /* IOPL 0, bitmap denies every port */
    xorl %eax, %eax
    PROBE 1, outb %al, $0x80    /* POST port */
    PROBE 2, inb $0x21, %al     /* master PIC mask */
    movl $0xf4, %edx
    movl $0x2a, %eax
    PROBE 3, outb %al, %dx      /* isa-debug-exit: would end the VM with code 0x2a */
    movl $0x80, %edx
    leaq user_buf(%rip), %rdi
    movl $4, %ecx
    PROBE 4, rep insb           /* no iteration may run: RCX stays 4 */
    leaq user_buf(%rip), %rsi
    PROBE 5, outsw
    movl $4, %eax               /* hypercall 4: shutdown */
    xorl %ebx, %ebx
    PROBE 6, vmcall
    leaq user_buf(%rip), %rax
    xorl %ecx, %ecx
    xorl %edx, %edx
    PROBE 7, monitor
    xorl %eax, %eax
    PROBE 8, mwait
    int $0x80

    .balign 16
    .globl user_phase_iopl3
user_phase_iopl3:               /* IOPL 3: ports open, hypercalls still not */
    xorl %eax, %eax
    PROBE 10, outb %al, $0x80
    movl $0x3fd, %edx
    PROBE 11, inb %dx, %al
    xorl %eax, %eax
    PROBE 12, vmcall
    int $0x80

    .balign 16
    .globl user_phase_bitmap
user_phase_bitmap:              /* IOPL 0, bitmap allows 0x80 */
    xorl %eax, %eax
    PROBE 20, outb %al, $0x80
    PROBE 21, outb %al, $0x81
    PROBE 22, outw %ax, $0x80   /* needs 0x81 too */
    PROBE 23, outw %ax, $0x7f   /* needs 0x7f too */
    movl $0x80, %edx
    leaq user_buf(%rip), %rsi
    movl $3, %ecx
    PROBE 24, rep outsb
    movl $0x3fd, %edx
    PROBE 25, inb %dx, %al      /* bitmap byte beyond the TSS limit */
    int $0x80

    .balign 16
    .globl user_phase_bitmap2
user_phase_bitmap2:             /* IOPL 0, bitmap allows 0x80-0x81 */
    xorl %eax, %eax
    PROBE 30, outw %ax, $0x80
    PROBE 31, outl %eax, $0x80  /* 0x82-0x83 denied */
    PROBE 32, inb $0x81, %al
    int $0x80

    .balign 16
user_buf: .fill 64, 1, 0x5a

/* uint64_t enter_user(uint64_t rip, uint64_t rsp, uint64_t rflags): IRETQ to
 * ring 3; returns when the user program raises INT 0x80. */
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
    pushq %rsi
    pushq %rdx
    pushq $0x2b                 /* CS: user code64 */
    pushq %rdi
    iretq

/* noreturn void user_return(void): back to enter_user's caller. */
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

    .section .bss
    .balign 16
kernel_ctx_rsp: .quad 0

    .section .note.GNU-stack, "", @progbits

/* A function whose first instruction carries the instruction breakpoint. */
    .section .text
    .globl bp_func, bp_target
bp_func:
bp_target:
    nop
    ret
    .section .note.GNU-stack, "", @progbits

/* INT 0x81 handler for the interrupt delivered onto a stack in a hole: its
 * frame went nowhere, so it cannot IRET; it records that it ran and goes back
 * to the kernel stack saved by hole_int(). */
    .section .text
    .globl hole_int, hole_handler
hole_int:                       /* void hole_int(uint64_t rsp): INT 0x81 on that stack */
    pushq %rbx
    movq %rsp, hole_saved_rsp(%rip)
    movq %rdi, %rsp
    int $0x81
    /* not reached: the handler resumes at 1f */
1:  movq hole_saved_rsp(%rip), %rsp
    popq %rbx
    ret
hole_handler:
    movq hole_saved_rsp(%rip), %rsp
    incl hole_handler_ran(%rip)
    jmp 1b

    .section .bss
    .balign 8
hole_saved_rsp: .quad 0
    .globl hole_handler_ran
hole_handler_ran: .long 0
    .section .note.GNU-stack, "", @progbits
