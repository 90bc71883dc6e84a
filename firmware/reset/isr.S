/*
 * 256 interrupt entry stubs, 16 bytes apart (entry.S builds the IDT from
 * that stride). Each pushes a dummy error code where the CPU does not, then
 * the vector number, and joins isr_common, which saves the GPRs in the
 * layout of struct int_frame and calls interrupt_dispatch().
 */
#include "isr-stubs.inc"

	.section .text.isr, "ax"
	.code64
	.balign	16
	.globl	isr_stubs
isr_stubs:
	ISR_STUBS
