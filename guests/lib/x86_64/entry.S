/*
 * Multiboot v1 entry for 64-bit guests: a 32-bit trampoline that builds boot
 * page tables, enables long mode and jumps to the high-half kernel.
 *
 * Boot page tables (in low memory, .boot.bss):
 *   - identity map of 0..4 GiB with 2 MiB pages (3..4 GiB uncached: MMIO);
 *   - 0xFFFFFFFF80000000 + x -> x for x in 0..2 GiB (the kernel's link address).
 */
#define MB_MAGIC 0x1BADB002
#define MB_FLAGS 0x00000003 /* page-align modules, want memory info */

    .section .multiboot, "a"
    .balign 4
    .long MB_MAGIC
    .long MB_FLAGS
    .long -(MB_MAGIC + MB_FLAGS)

    .section .boot.text, "ax"
    .code32
    .globl _start
_start:
    cli
    cld
    movl %eax, %esi             /* Multiboot magic */
    movl %ebx, %edi             /* MBI physical address */
    movl $boot_stack32_top, %esp

    /* Long mode available? (cpuid clobbers eax..edx, not esi/edi) */
    movl $0x80000000, %eax
    cpuid
    cmpl $0x80000001, %eax
    jb no_long_mode
    movl $0x80000001, %eax
    cpuid
    testl $(1 << 29), %edx
    jz no_long_mode

    /* Zero the kernel's .bss and the boot page tables. */
    pushl %edi
    movl $__bss_start_phys, %edi
    movl $__bss_end_phys, %ecx
    subl %edi, %ecx
    xorl %eax, %eax
    rep stosb
    movl $boot_tables_start, %edi
    movl $(boot_tables_end - boot_tables_start), %ecx
    rep stosb
    popl %edi

    /* PML4[0] -> PDPT_lo, PML4[511] -> PDPT_hi */
    movl $boot_pdpt_lo + 3, boot_pml4
    movl $boot_pdpt_hi + 3, boot_pml4 + 511 * 8
    /* PDPT_lo[0..3] -> PD[0..3]; PDPT_hi[510..511] -> PD[0..1] */
    movl $boot_pd + 0x0000 + 3, boot_pdpt_lo + 0 * 8
    movl $boot_pd + 0x1000 + 3, boot_pdpt_lo + 1 * 8
    movl $boot_pd + 0x2000 + 3, boot_pdpt_lo + 2 * 8
    movl $boot_pd + 0x3000 + 3, boot_pdpt_lo + 3 * 8
    movl $boot_pd + 0x0000 + 3, boot_pdpt_hi + 510 * 8
    movl $boot_pd + 0x1000 + 3, boot_pdpt_hi + 511 * 8
    /* PD[k] = k * 2 MiB | PS | RW | P, k = 0..2047 */
    xorl %ecx, %ecx
1:  movl %ecx, %eax
    shll $21, %eax
    orl $0x83, %eax
    cmpl $1536, %ecx            /* 3..4 GiB: PCD | PWT */
    jb 2f
    orl $0x18, %eax
2:  movl %eax, boot_pd(, %ecx, 8)
    incl %ecx
    cmpl $2048, %ecx
    jb 1b

    movl %cr4, %eax
    orl $0x20, %eax             /* PAE */
    movl %eax, %cr4
    movl $boot_pml4, %eax
    movl %eax, %cr3
    movl $0xC0000080, %ecx      /* EFER.LME */
    rdmsr
    orl $0x100, %eax
    wrmsr
    movl %cr0, %eax
    orl $0x80010001, %eax       /* PG | WP | PE */
    movl %eax, %cr0
    lgdt boot_gdt_ptr
    ljmp $0x08, $long_mode

    .code64
long_mode:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    xorw %ax, %ax
    movw %ax, %fs
    movw %ax, %gs
    movabsq $boot_stack_top, %rsp
    xorl %ebp, %ebp
    /* x86_64_boot(magic = esi, mbi = edi) */
    movl %esi, %eax
    movl %edi, %esi
    movl %eax, %edi
    movabsq $x86_64_boot, %rax
    call *%rax
3:  cli
    hlt
    jmp 3b

    .code32
no_long_mode:
    movl $no_lm_msg, %esi
4:  movb (%esi), %al
    testb %al, %al
    jz 5f
    movw $0x3f8, %dx
    outb %al, %dx
    incl %esi
    jmp 4b
5:  movw $0xf4, %dx
    movl $5, %eax               /* EXIT_NO_CPU_FEAT */
    outl %eax, %dx
6:  cli
    hlt
    jmp 6b

    .section .boot.data, "a"
no_lm_msg:
    .asciz "PANIC: CPU has no long mode\r\n"
    .balign 8
boot_gdt:
    .quad 0
    .quad 0x00AF9A000000FFFF    /* 0x08: 64-bit code */
    .quad 0x00CF92000000FFFF    /* 0x10: data */
boot_gdt_end:
    .balign 4
    .word 0
boot_gdt_ptr:
    .word boot_gdt_end - boot_gdt - 1
    .long boot_gdt

    .section .boot.bss, "aw", @nobits
    .balign 4096
boot_tables_start:
    .globl boot_pml4
boot_pml4:    .skip 4096
boot_pdpt_lo: .skip 4096
boot_pdpt_hi: .skip 4096
boot_pd:      .skip 4 * 4096
boot_tables_end:
    .balign 16
boot_stack32: .skip 1024
boot_stack32_top:

    .section .bss
    .balign 16
boot_stack: .skip 32768
    .globl boot_stack_top
boot_stack_top:

    .section .note.GNU-stack, "", @progbits
