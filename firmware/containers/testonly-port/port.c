/*
 * testonly-port: a granted port works; an ungranted one (0x64, the
 * keyboard controller: a write of 0xFE would reset the machine) must get
 * the container killed with a port-denied finding. A direct IN from ring 3
 * would #GP (IOPL 0, no I/O bitmap) and is covered by the same kill path.
 */
#include "fm.h"

int main(void)
{
	u8 lsr = fm_inb(0x3fd);
	fm_log("granted port 0x3fd reads %s; now writing 0xfe to port 0x64", (lsr & 0x60) ? "ok" : "odd");
	fm_outb(0x64, 0xfe);
	fm_log("ungranted port write went through: isolation is broken");
	return FM_EXIT_PASS;
}
