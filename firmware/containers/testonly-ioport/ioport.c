/*
 * testonly-ioport: direct port I/O from ring 3, no system call. The OS opens
 * exactly the granted ports (CMOS 0x70-0x71) in the TSS I/O permission
 * bitmap, so reading a CMOS register works; then it does what a hostile
 * image would: a POST code to port 0x80, masking both PICs (the timer that
 * enforces its time limit) and ending the machine through isa-debug-exit.
 * The first of those must #GP and the OS must kill it; nothing after it runs.
 */
#include "fm.h"

static inline void outb(u16 port, u8 v) { __asm__ volatile("outb %0, %1" ::"a"(v), "Nd"(port)); }
static inline u8 inb(u16 port)
{
	u8 v;
	__asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

int main(void)
{
	outb(0x70, 0x0e);             /* CMOS diagnostic status, through the granted index port */
	u8 diag = inb(0x71);
	outb(0x70, 0x0e);
	fm_log("granted ports 0x70-0x71 answer our own IN/OUT: CMOS[0x0e] reads back %s", inb(0x71) == diag ? "the same" : "different");
	fm_log("now writing POST code 0xee to port 0x80");
	outb(0x80, 0xee);
	fm_log("POST write went through; masking both PICs and writing isa-debug-exit: isolation is broken");
	outb(0x21, 0xff);
	outb(0xa1, 0xff);
	outb(0xf4, 0x2a);
	return FM_EXIT_PASS;
}
