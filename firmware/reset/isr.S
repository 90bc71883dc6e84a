/*
 * 256 interrupt entry stubs, 16 bytes apart (entry.S builds the IDT from
 * that stride). Each pushes a dummy error code where the CPU does not, then
 * the vector number, and joins isr_common, which saves the GPRs in the
 * layout of struct int_frame and calls interrupt_dispatch().
 */
	.section .text.isr, "ax"
	.code64
	.balign	16
	.globl	isr_stubs
isr_stubs:
	.set	vec, 0
	.rept	256
	.balign	16, 0xcc
	.if (vec == 8) || ((vec >= 10) && (vec <= 14)) || (vec == 17) || (vec == 21) || (vec == 29) || (vec == 30)
	.else
	pushq	$0
	.endif
	pushq	$vec
	jmp	isr_common
	.set	vec, vec + 1
	.endr
	.balign	16, 0xcc
isr_stubs_end:

isr_common:
	pushq	%rax
	pushq	%rbx
	pushq	%rcx
	pushq	%rdx
	pushq	%rsi
	pushq	%rdi
	pushq	%rbp
	pushq	%r8
	pushq	%r9
	pushq	%r10
	pushq	%r11
	pushq	%r12
	pushq	%r13
	pushq	%r14
	pushq	%r15
	cld
	movq	%rsp, %rdi
	call	interrupt_dispatch
	popq	%r15
	popq	%r14
	popq	%r13
	popq	%r12
	popq	%r11
	popq	%r10
	popq	%r9
	popq	%r8
	popq	%rbp
	popq	%rdi
	popq	%rsi
	popq	%rdx
	popq	%rcx
	popq	%rbx
	popq	%rax
	addq	$16, %rsp
	iretq
