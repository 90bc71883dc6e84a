/*
 * uart: COM1 (16550 at 0x3F8) diagnostic. Scratch register patterns, then
 * the MCR loopback: modem-control outputs must come back on the modem
 * status inputs, and bytes written to THR must arrive on RBR. The UART is
 * the OS console, so nothing is logged while loopback is on; MCR is
 * restored before the result is reported.
 */
#include "fm.h"

#define COM1 0x3f8
#define THR 0
#define RBR 0
#define LSR 5
#define MCR 4
#define MSR 6
#define SCR 7
#define LSR_DR   0x01
#define LSR_THRE 0x20
#define LSR_TEMT 0x40
#define MCR_LOOP 0x10

#define CODE_SCRATCH  0x0101
#define CODE_MSR      0x0102
#define CODE_LOOPBACK 0x0103
#define CODE_TX_STUCK 0x0104

/* Wait for an LSR bit, bounded by time (the OS timer), not by iterations:
 * the console reader on the host side may be slow to drain the FIFO. */
static bool wait_lsr(u8 bit, u64 ms)
{
	u64 t0 = fm_ticks();
	for (;;) {
		if (fm_inb(COM1 + LSR) & bit)
			return true;
		if (fm_ticks() - t0 > ms)
			return (fm_inb(COM1 + LSR) & bit) != 0;
	}
}

int main(void)
{
	static const u8 scratch[] = { 0x55, 0xaa, 0x00, 0xff, 0x5a };
	for (u32 i = 0; i < sizeof(scratch); i++) {
		fm_outb(COM1 + SCR, scratch[i]);
		u8 v = fm_inb(COM1 + SCR);
		if (v != scratch[i]) {
			u64 d[4] = { 1, scratch[i], v, 0 };
			fm_finding(FM_SEV_ERROR, CODE_SCRATCH, d, "COM1 scratch register: wrote 0x%02x, read 0x%02x",
				   scratch[i], v);
			return FM_EXIT_FAIL;
		}
	}

	/* let the OS's last console bytes drain before looping back */
	if (!wait_lsr(LSR_TEMT, 2000)) {
		u64 d[4] = { 2, fm_inb(COM1 + LSR), 0, 0 };
		fm_finding(FM_SEV_ERROR, CODE_TX_STUCK, d, "COM1 transmitter never empties (LSR 0x%02x)", (u32)d[1]);
		return FM_EXIT_FAIL;
	}
	u8 mcr = fm_inb(COM1 + MCR);
	u32 fail = 0;
	u64 d[4] = { 0, 0, 0, 0 };

	/* modem-status echo: DTR->DSR, RTS->CTS, OUT1->RI, OUT2->DCD */
	static const u8 outs[] = { 0x0, 0x1, 0x2, 0x4, 0x8, 0xf };
	static const u8 ins[] = { 0x00, 0x20, 0x10, 0x40, 0x80, 0xf0 };
	for (u32 i = 0; i < sizeof(outs) && !fail; i++) {
		fm_outb(COM1 + MCR, MCR_LOOP | outs[i]);
		u8 msr = fm_inb(COM1 + MSR) & 0xf0;
		if (msr != ins[i]) {
			fail = CODE_MSR;
			d[0] = 3, d[1] = outs[i], d[2] = ins[i], d[3] = msr;
		}
	}
	/* data echo */
	static const u8 bytes[] = { 0x55, 0xaa, 0x00, 0xff, 'F', 'M' };
	fm_outb(COM1 + MCR, MCR_LOOP);
	for (u32 i = 0; i < 32 && (fm_inb(COM1 + LSR) & LSR_DR); i++)
		(void)fm_inb(COM1 + RBR);
	for (u32 i = 0; i < sizeof(bytes) && !fail; i++) {
		if (!wait_lsr(LSR_THRE, 100)) {
			fail = CODE_TX_STUCK;
			d[0] = 4, d[1] = bytes[i];
			break;
		}
		fm_outb(COM1 + THR, bytes[i]);
		if (!wait_lsr(LSR_DR, 100)) {
			fail = CODE_LOOPBACK;
			d[0] = 5, d[1] = bytes[i], d[2] = 0x100;   /* nothing received */
			break;
		}
		u8 v = fm_inb(COM1 + RBR);
		if (v != bytes[i]) {
			fail = CODE_LOOPBACK;
			d[0] = 6, d[1] = bytes[i], d[2] = v;
		}
	}
	fm_outb(COM1 + MCR, mcr);

	if (fail == CODE_MSR) {
		fm_finding(FM_SEV_ERROR, fail, d, "COM1 loopback: MCR 0x%02x gave MSR 0x%02x, expected 0x%02x",
			   (u32)(MCR_LOOP | d[1]), (u32)d[3], (u32)d[2]);
		return FM_EXIT_FAIL;
	}
	if (fail) {
		if (d[2] == 0x100)
			fm_finding(FM_SEV_ERROR, fail, d, "COM1 loopback: byte 0x%02x never received", (u32)d[1]);
		else
			fm_finding(FM_SEV_ERROR, fail, d, "COM1 loopback: sent 0x%02x, received 0x%02x", (u32)d[1],
				   (u32)d[2]);
		return FM_EXIT_FAIL;
	}
	fm_log("COM1: scratch register ok (%u patterns), MCR loopback ok (%u modem lines, %u bytes)",
	       (u32)sizeof(scratch), 4u, (u32)sizeof(bytes));
	return FM_EXIT_PASS;
}
