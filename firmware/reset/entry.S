/*
 * 32-bit protected mode -> 64-bit long mode -> C.
 * Runs from the ROM alias at 0xE0000-0xFFFFF; uses only the low RAM
 * described in layout.h before RAM is sized.
 */
#include "layout.h"
#include "post_codes.h"

#define CR0_PE		0x00000001
#define CR0_MP		0x00000002
#define CR0_EM		0x00000004
#define CR0_TS		0x00000008
#define CR0_NE		0x00000020
#define CR0_PG		0x80000000
#define CR4_PAE		0x00000020
#define CR4_OSFXSR	0x00000200
#define CR4_OSXMMEXCPT	0x00000400
#define MSR_EFER	0xc0000080
#define EFER_LME	0x00000100

#define PTE_P		0x001
#define PTE_RW		0x002
#define PTE_PWT		0x008
#define PTE_PCD		0x010
#define PTE_PS		0x080

	.section .text.entry, "ax"
	.code32
	.globl	pm32_entry
pm32_entry:
	movw	$SEL_DATA, %ax
	movw	%ax, %ds
	movw	%ax, %es
	movw	%ax, %ss
	movw	%ax, %fs
	movw	%ax, %gs
	movb	$POST_PROTECTED_MODE, %al
	outb	%al, $0x80

	/* Long mode available? CPUID 0x80000001 EDX bit 29. */
	movl	$0x80000000, %eax
	cpuid
	cmpl	$0x80000001, %eax
	jb	no_long_mode
	movl	$0x80000001, %eax
	cpuid
	btl	$29, %edx
	jnc	no_long_mode

	/* Clear the page-table area 0x1000-0x6FFF. */
	movl	$PT_AREA_START, %edi
	xorl	%eax, %eax
	movl	$((PT_AREA_END - PT_AREA_START) / 4), %ecx
	rep stosl

	/* PML4[0] -> PDPT, PDPT[0..3] -> the four page directories. */
	movl	$(PDPT_ADDR | PTE_P | PTE_RW), PML4_ADDR
	movl	$((PD_ADDR + 0x0000) | PTE_P | PTE_RW), PDPT_ADDR + 0
	movl	$((PD_ADDR + 0x1000) | PTE_P | PTE_RW), PDPT_ADDR + 8
	movl	$((PD_ADDR + 0x2000) | PTE_P | PTE_RW), PDPT_ADDR + 16
	movl	$((PD_ADDR + 0x3000) | PTE_P | PTE_RW), PDPT_ADDR + 24

	/* 2048 x 2 MiB pages identity-mapping 0-4 GiB; 3-4 GiB (MMIO) uncached. */
	movl	$PD_ADDR, %edi
	movl	$(PTE_P | PTE_RW | PTE_PS), %eax
	xorl	%ecx, %ecx
1:	movl	%eax, %edx
	cmpl	$1536, %ecx
	jb	2f
	orl	$(PTE_PCD | PTE_PWT), %edx
2:	movl	%edx, (%edi)
	addl	$0x200000, %eax
	addl	$8, %edi
	incl	%ecx
	cmpl	$2048, %ecx
	jb	1b

	/* PAE + SSE state enabled (the C code itself is general-regs-only). */
	movl	%cr4, %eax
	orl	$(CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT), %eax
	movl	%eax, %cr4
	movl	$PML4_ADDR, %eax
	movl	%eax, %cr3
	movl	$MSR_EFER, %ecx
	rdmsr
	orl	$EFER_LME, %eax
	wrmsr
	movl	%cr0, %eax
	andl	$~(CR0_EM | CR0_TS), %eax
	orl	$(CR0_PG | CR0_NE | CR0_MP | CR0_PE), %eax
	movl	%eax, %cr0
	ljmpl	$SEL_CODE64, $lm64_entry

no_long_mode:
	movb	$POST_LONG_MODE_UNSUPPORTED, %al
	outb	%al, $0x80
	/* Raw COM1 output (the UART is usable at reset defaults on QEMU). */
	movl	$no_lm_msg, %esi
3:	lodsb
	testb	%al, %al
	jz	5f
	movb	%al, %bl
	movw	$0x3fd, %dx
	movl	$100000, %ecx
4:	inb	%dx, %al
	testb	$0x20, %al
	jnz	6f
	loop	4b
6:	movw	$0x3f8, %dx
	movb	%bl, %al
	outb	%al, %dx
	jmp	3b
5:	cli
	hlt
	jmp	5b

	.code64
lm64_entry:
	movw	$SEL_DATA, %ax
	movw	%ax, %ds
	movw	%ax, %es
	movw	%ax, %ss
	movw	%ax, %fs
	movw	%ax, %gs
	movl	$STACK_TOP, %esp
	movb	$POST_LONG_MODE, %al
	outb	%al, $0x80

	/* Copy .data from ROM, clear .bss. */
	movl	$_data_load, %esi
	movl	$_data_start, %edi
	movl	$_data_end, %ecx
	subl	%edi, %ecx
	rep movsb
	movl	$_bss_start, %edi
	movl	$_bss_end, %ecx
	subl	%edi, %ecx
	xorl	%eax, %eax
	rep stosb

	/* 256 interrupt gates -> isr_stubs + 16 * vector. */
	movl	$IDT_ADDR, %edi
	movl	$isr_stubs, %edx
	movl	$256, %ecx
7:	movl	%edx, %eax
	movw	%ax, (%rdi)
	movw	$SEL_CODE64, 2(%rdi)
	movw	$0x8e00, 4(%rdi)	/* present, DPL 0, 64-bit interrupt gate */
	shrl	$16, %eax
	movw	%ax, 6(%rdi)
	movl	$0, 8(%rdi)
	movl	$0, 12(%rdi)
	addl	$16, %edi
	addl	$16, %edx
	decl	%ecx
	jnz	7b
	lidt	idt_desc

	xorl	%ebp, %ebp
	call	fw_main
8:	cli
	hlt
	jmp	8b

/*
 * void fw_handoff(u64 entry, u64 bootinfo): jump to the next stage with
 * RDI = boot-info, interrupts off, RSP = STACK_TOP - 8 holding a return
 * address that reports NEXT_STAGE_RETURNED. Other GPRs are zeroed.
 */
	.globl	fw_handoff
fw_handoff:
	cli
	movl	$STACK_TOP, %esp
	pushq	$next_stage_returned
	movq	%rdi, %rax
	movq	%rsi, %rdi
	xorl	%ebx, %ebx
	xorl	%ecx, %ecx
	xorl	%edx, %edx
	xorl	%esi, %esi
	xorl	%ebp, %ebp
	xorl	%r8d, %r8d
	xorl	%r9d, %r9d
	xorl	%r10d, %r10d
	xorl	%r11d, %r11d
	xorl	%r12d, %r12d
	xorl	%r13d, %r13d
	xorl	%r14d, %r14d
	xorl	%r15d, %r15d
	cld
	jmpq	*%rax

next_stage_returned:
	cli
	movl	$STACK_TOP, %esp
	movq	%rax, %rdi
	call	fw_next_stage_returned
9:	cli
	hlt
	jmp	9b

	.section .rodata
	.balign	8
idt_desc:
	.word	IDT_SIZE - 1
	.quad	IDT_ADDR
no_lm_msg:
	.asciz	"[POST 0xED] FATAL: CPU does not support long mode, halting\r\n"
