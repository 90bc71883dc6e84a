/*
 * Application processor start-up code. smp_start_aps() copies the bytes
 * between ap_tramp_start and ap_tramp_end to SMP_TRAMPOLINE_PHYS (0x7000)
 * and fills in the data fields; the SIPI starts each AP there in real mode
 * (CS = 0x0700, IP = 0). The code only uses addresses relative to the copy.
 */
#define TRAMP_PHYS 0x7000
#define SMP_MAX_APS 15
#define AP_STACK_SIZE 16384

    .section .rodata.ap_trampoline, "a"
    .balign 16
    .globl ap_tramp_start, ap_tramp_end
    .globl ap_tramp_entry, ap_tramp_stack_base, ap_tramp_cr3, ap_tramp_next_index
ap_tramp_start:
    .code16
    cli
    cld
    movw %cs, %ax
    movw %ax, %ds
    lgdtl (ap_tramp_gdt_ptr - ap_tramp_start)
    movl %cr0, %eax
    orl $1, %eax
    movl %eax, %cr0
    ljmpl $0x08, $(TRAMP_PHYS + pm32 - ap_tramp_start)

    .code32
pm32:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movl %cr4, %eax
    orl $0x20, %eax                             /* PAE */
    movl %eax, %cr4
    movl (TRAMP_PHYS + ap_tramp_cr3 - ap_tramp_start), %eax
    movl %eax, %cr3
    movl $0xC0000080, %ecx                      /* EFER.LME */
    rdmsr
    orl $0x100, %eax
    wrmsr
    movl %cr0, %eax
    orl $0x80010000, %eax                       /* PG | WP */
    movl %eax, %cr0
    ljmp $0x18, $(TRAMP_PHYS + lm64 - ap_tramp_start)

    .code64
lm64:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movl $1, %eax
    lock xaddl %eax, ap_tramp_next_index(%rip)  /* stack slot */
    cmpl $SMP_MAX_APS, %eax
    jae 1f
    leal 1(%eax), %ecx
    imull $AP_STACK_SIZE, %ecx
    movq ap_tramp_stack_base(%rip), %rsp
    addq %rcx, %rsp
    xorl %ebp, %ebp
    movq ap_tramp_entry(%rip), %rax
    jmp *%rax                                   /* ap_entry64(), never returns */
1:  cli                                         /* more APs than stacks */
    hlt
    jmp 1b

    .balign 8
ap_tramp_gdt:
    .quad 0
    .quad 0x00CF9A000000FFFF    /* 0x08: 32-bit code */
    .quad 0x00CF92000000FFFF    /* 0x10: data */
    .quad 0x00AF9A000000FFFF    /* 0x18: 64-bit code */
ap_tramp_gdt_ptr:
    .word ap_tramp_gdt_ptr - ap_tramp_gdt - 1
    .long TRAMP_PHYS + ap_tramp_gdt - ap_tramp_start
    .balign 8
ap_tramp_entry:      .quad 0
ap_tramp_stack_base: .quad 0
ap_tramp_cr3:        .long 0
ap_tramp_next_index: .long 0
ap_tramp_end:

    .section .note.GNU-stack, "", @progbits
