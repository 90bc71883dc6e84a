/* Function entry: RDI = body, RSI = length, RDX = output, RCX = capacity (function-runtime ABI). */
    .section .text.start, "ax"
    .code64
    .globl _start
_start:
    andq $-16, %rsp
    call handle
    movq %rax, %rdi             /* the length, or a negative error the runtime reports */
    xorl %eax, %eax             /* syscall 0: exit(length) */
    int $0x80
    ud2
    .section .note.GNU-stack, "", @progbits
