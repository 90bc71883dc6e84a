/* testonly-spin: never exits; the OS must kill it at its 300 ms limit (timeout). */
#include "fm.h"

int main(void)
{
	fm_log("spinning forever");
	for (;;)
		__asm__ volatile("pause");
}
