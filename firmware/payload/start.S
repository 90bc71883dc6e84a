/*
 * Test payload entry. The firmware jumps here in long mode with
 * RDI = physical address of the boot-info block and interrupts disabled.
 */
	.section .text.start, "ax"
	.code64
	.globl	_start
_start:
	cli
	movq	$_stack_top, %rsp
	xorl	%ebp, %ebp
	call	payload_main
1:	cli
	hlt
	jmp	1b
