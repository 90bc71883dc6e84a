/*
 * Multiboot v1 entry for 32-bit guests. The loader leaves us in 32-bit
 * protected mode, paging off, interrupts off, EAX = 0x2BADB002, EBX = MBI.
 */
#define MB_MAGIC 0x1BADB002
#define MB_FLAGS 0x00000003 /* page-align modules, want memory info */

    .section .multiboot, "a"
    .balign 4
    .long MB_MAGIC
    .long MB_FLAGS
    .long -(MB_MAGIC + MB_FLAGS)

    .section .text.entry, "ax"
    .code32
    .globl _start
_start:
    cli
    cld
    movl $boot_stack_top, %esp
    movl %eax, %esi
    movl %ebx, %edi
    /* Load our own flat GDT: do not depend on the loader's. */
    lgdt gdt32_ptr
    ljmp $0x08, $1f
1:  movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movw %ax, %fs
    movw %ax, %gs
    /* Zero .bss (the loader should have, but do not rely on it). */
    movl $__bss_start, %edi
    movl $__bss_end, %ecx
    subl %edi, %ecx
    xorl %eax, %eax
    rep stosb
    pushl %ebx          /* mbi */
    pushl %esi          /* magic */
    call boot_main
2:  cli
    hlt
    jmp 2b

    .section .rodata
    .balign 8
gdt32:
    .quad 0
    .quad 0x00CF9A000000FFFF /* 0x08: flat 32-bit code */
    .quad 0x00CF92000000FFFF /* 0x10: flat data */
gdt32_end:
    .balign 4
    .word 0
gdt32_ptr:
    .word gdt32_end - gdt32 - 1
    .long gdt32

    .section .bss
    .balign 16
boot_stack:
    .skip 16384
boot_stack_top:

    .section .note.GNU-stack, "", @progbits
