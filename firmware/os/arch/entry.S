/*
 * OS entry. The firmware jumps to _start at its PHYSICAL address, in long
 * mode under its own identity map, with RDI = boot-info (physical) and
 * interrupts off. Until the jump to the high half this code only uses
 * RIP-relative addressing, so it runs correctly at the physical address.
 *
 * Boot page tables (static, built at link time): PML4[0] identity-maps
 * 0-1 GiB (so the next instruction after the CR3 load still exists),
 * PML4[256] maps the same 1 GiB at PHYS_MAP (direct map) and PML4[511] maps
 * it at KERNEL_VMA. paging_init() replaces them with the OS's real tables
 * (no identity map, 4 KiB kernel pages with W^X) before anything else runs.
 */
	.set	KVMA, 0xFFFFFFFF80000000

	.section .text.start, "ax"
	.code64
	.globl	_start
_start:
	cli
	cld
	movq	%rdi, %r12
	leaq	boot_pml4(%rip), %rax          /* physical: we run identity-mapped */
	movq	%rax, %cr3
	movabsq	$high_entry, %rax
	jmpq	*%rax
high_entry:
	movabsq	$boot_stack_top, %rsp
	xorl	%ebp, %ebp
	movq	%r12, %rdi
	call	kmain
1:	cli
	hlt
	jmp	1b

	.section .data.pagetables, "aw"
	.balign	4096
boot_pml4:
	.quad	boot_pdpt_low - KVMA + 3
	.fill	255, 8, 0
	.quad	boot_pdpt_low - KVMA + 3       /* [256] PHYS_MAP */
	.fill	254, 8, 0
	.quad	boot_pdpt_high - KVMA + 3      /* [511] KERNEL_VMA */
boot_pdpt_low:
	.quad	boot_pd - KVMA + 3
	.fill	511, 8, 0
boot_pdpt_high:
	.fill	510, 8, 0
	.quad	boot_pd - KVMA + 3             /* [510] = 0xFFFFFFFF80000000 */
	.quad	0
boot_pd:
	.set	i, 0
	.rept	512
	.quad	(i << 21) | 0x83               /* 2 MiB, present, writable */
	.set	i, i + 1
	.endr

	.section .bss.pagealigned.stack, "aw", @nobits
	.balign	4096
	.globl	boot_stack_guard
	.globl	boot_stack_top
boot_stack_guard:                              /* left unmapped by paging_init */
	.skip	0x1000
boot_stack:
	.skip	0x4000
boot_stack_top:
