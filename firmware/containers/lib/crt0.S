/* Container entry: ring 3, RSP = top of the 16 KiB stack, all GPRs zero. */
	.section .text.start, "ax"
	.code64
	.globl	_start
_start:
	xorl	%ebp, %ebp
	andq	$-16, %rsp
	call	main
	movl	%eax, %edi
	movl	$0, %eax                        /* SYS_EXIT */
	syscall
1:	jmp	1b
