/*
 * Reset vector and real-mode entry.
 *
 * The CPU starts at F000:FFF0. On QEMU the hidden CS base is 0xFFFF0000 (the
 * ROM's high mapping), on the Firmament emulator it is 0xF0000 (the alias);
 * both windows hold the same bytes, so until the first far jump this code
 * only uses near jumps and CS-relative data.
 */
#include "layout.h"
#include "post_codes.h"

	.section .text16, "ax"
	.code16

real_entry:
	cli
	cld
	movb	$POST_RESET_ENTERED, %al
	outb	%al, $0x80

	/* Fast A20 via port 0x92: set bit 1, never bit 0 (that resets the CPU). */
	inb	$0x92, %al
	orb	$0x02, %al
	andb	$0xfe, %al
	outb	%al, $0x92

	/* GDT pointer addressed relative to CS: valid for either CS base. */
	lgdtl	%cs:(gdt_desc - 0xf0000)

	movl	%cr0, %eax
	andl	$0x9fffffff, %eax	/* clear CD and NW: caches on */
	orl	$0x00000001, %eax	/* PE */
	movl	%eax, %cr0

	/* First far jump: from here on CS base is 0 and we run from the alias. */
	ljmpl	$SEL_CODE32, $pm32_entry

	/*
	 * Flat GDT, read-only in ROM. Every descriptor already has its
	 * "accessed" bit set so the CPU never writes to the ROM when loading
	 * a segment register.
	 */
	.balign	16
	.globl	fw_gdt
fw_gdt:
	.quad	0x0000000000000000	/* 0x00 null */
	.quad	0x00cf9b000000ffff	/* 0x08 code32: base 0, 4 GiB, D=1, accessed */
	.quad	0x00cf93000000ffff	/* 0x10 data: base 0, 4 GiB, B=1, accessed */
	.quad	0x00af9b000000ffff	/* 0x18 code64: L=1, accessed */
fw_gdt_end:

	.balign	8
	.globl	gdt_desc
gdt_desc:
	.word	fw_gdt_end - fw_gdt - 1
	.long	fw_gdt			/* linear address inside the 0xE0000 alias */

	/* Exactly 16 bytes at linear 0xFFFF0 / 0xFFFFFFF0. */
	.section .reset, "ax"
	.code16
	.globl	reset_vector
reset_vector:
	jmp	real_entry		/* near: stays inside the F000 segment */
	.balign	16, 0xf4
