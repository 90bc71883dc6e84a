/*
 * testonly-wild: reads its own memory fine, then writes to the OS image
 * (mapped, but supervisor-only): the OS must kill it with a page-fault
 * finding (address 0xffffffff80200000, error 0x7) and carry on.
 */
#include "fm.h"

static volatile u64 mine = 42;

int main(void)
{
	fm_log("own data reads %lu; now writing to 0xffffffff80200000", (u64)mine);
	*(volatile u64 *)0xffffffff80200000ul = 0xdeadbeef;
	fm_log("write went through: isolation is broken");
	return FM_EXIT_PASS;
}
