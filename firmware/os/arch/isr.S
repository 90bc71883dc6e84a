/*
 * Interrupt stubs (256, 16 bytes apart), the common interrupt path, the
 * SYSCALL entry, ring-3 entry/exit and the handoff VMCALL.
 *
 * Both interrupts and syscalls build a struct int_frame (os.h) on the trap
 * stack: interrupts from ring 3 arrive on TSS.RSP0 = trap_stack_top, the
 * SYSCALL entry switches to it by hand. The kernel itself runs with
 * interrupts disabled; containers run with IF=1.
 */
#include "isr-stubs.inc"

	.section .text.isr, "ax"
	.code64
	.balign	16
	.globl	isr_stubs
isr_stubs:
	ISR_STUBS

/*
 * SYSCALL entry: RCX = user RIP, R11 = user RFLAGS, RSP = user RSP,
 * IF/TF/DF/AC/NT cleared by SFMASK. Build an int_frame on the trap stack
 * (vector 0x100 marks a syscall) and return with SYSRET.
 */
	.globl	syscall_entry
syscall_entry:
	movq	%rsp, syscall_user_rsp(%rip)
	movq	trap_stack_top(%rip), %rsp
	pushq	$0x23                          /* ss (SEL_UDATA | 3) */
	pushq	syscall_user_rsp(%rip)         /* rsp */
	pushq	%r11                           /* rflags */
	pushq	$0x2b                          /* cs (SEL_UCODE | 3) */
	pushq	%rcx                           /* rip */
	pushq	$0                             /* error */
	pushq	$0x100                         /* vector: syscall */
	SAVE_GPRS
	cld
	movq	%rsp, %rdi
	call	syscall_dispatch
	RESTORE_GPRS
	addq	$16, %rsp                      /* vector, error */
	popq	%rcx                           /* rip (checked canonical by syscall_dispatch) */
	addq	$8, %rsp                       /* cs */
	popq	%r11                           /* rflags */
	popq	%rsp                           /* user rsp; IF is still 0 until sysret */
	sysretq

/*
 * u64 user_enter(struct kctx *ctx, u64 rip, u64 rsp, u64 cr3)
 * Save the callee-saved registers and RSP in *ctx, switch to the
 * container's address space, give it a clean FPU/SSE state and zeroed GPRs
 * and IRET to ring 3 with IF=1. user_return(ctx, value) comes back here.
 */
	.globl	user_enter
user_enter:
	pushq	%rbx
	pushq	%rbp
	pushq	%r12
	pushq	%r13
	pushq	%r14
	pushq	%r15
	movq	%rsp, (%rdi)
	movq	%rcx, %cr3
	fxrstor	clean_fpu_state(%rip)
	pushq	$0x23                          /* ss */
	pushq	%rdx                           /* rsp */
	pushq	$0x202                         /* rflags: IF */
	pushq	$0x2b                          /* cs */
	pushq	%rsi                           /* rip */
	xorl	%eax, %eax
	xorl	%ebx, %ebx
	xorl	%ecx, %ecx
	xorl	%edx, %edx
	xorl	%esi, %esi
	xorl	%edi, %edi
	xorl	%ebp, %ebp
	xorl	%r8d, %r8d
	xorl	%r9d, %r9d
	xorl	%r10d, %r10d
	xorl	%r11d, %r11d
	xorl	%r12d, %r12d
	xorl	%r13d, %r13d
	xorl	%r14d, %r14d
	xorl	%r15d, %r15d
	iretq

/* NORETURN void user_return(struct kctx *ctx, u64 value) */
	.globl	user_return
user_return:
	cli
	movq	(%rdi), %rsp
	movq	%rsi, %rax
	popq	%r15
	popq	%r14
	popq	%r13
	popq	%r12
	popq	%rbp
	popq	%rbx
	ret

/*
 * u64 handoff_vmcall(u64 rax, u64 rbx): VMCALL with RAX/RBX as given.
 * Without a hypervisor the CPU raises #UD at handoff_vmcall_insn; the #UD
 * handler recognises that RIP and finishes the boot instead.
 */
	.globl	handoff_vmcall
	.globl	handoff_vmcall_insn
handoff_vmcall:
	pushq	%rbx
	movq	%rdi, %rax
	movq	%rsi, %rbx
handoff_vmcall_insn:
	vmcall
	popq	%rbx
	ret

	.section .bss.syscall, "aw", @nobits
	.balign	8
syscall_user_rsp:
	.skip	8

	.section .rodata.fpu, "a"
	.balign	16
clean_fpu_state:                               /* FXSAVE image after FNINIT, MXCSR default */
	.word	0x037f                         /* FCW */
	.word	0                              /* FSW */
	.byte	0, 0                           /* FTW (abridged: all empty), reserved */
	.word	0                              /* FOP */
	.quad	0                              /* FIP */
	.quad	0                              /* FDP */
	.long	0x1f80                         /* MXCSR */
	.long	0x0000ffff                     /* MXCSR_MASK (ignored by FXRSTOR) */
	.fill	512 - 32, 1, 0
