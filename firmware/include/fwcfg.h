/*
 * QEMU fw_cfg over I/O ports, shared by the firmware (post/fwcfg.c) and the
 * lightweight OS (os/kernel/fwcfg.c): selector 0x510 (16-bit), data 0x511,
 * DMA address 0x514 (high, big-endian) / 0x518 (low, big-endian, triggers).
 * Each user keeps its own state (present, DMA) and descriptor, and passes
 * physical addresses (the firmware addresses memory by identity, the OS
 * through virt_to_phys); the ports, keys, descriptor layout, probe, port
 * reads, DMA transfer and file directory walk live here.
 */
#ifndef FW_FWCFG_H
#define FW_FWCFG_H

#include "types.h"
#include "io.h"
#include "lib.h"

#define FW_CFG_PORT_SEL    0x510
#define FW_CFG_PORT_DATA   0x511
#define FW_CFG_PORT_DMA_HI 0x514
#define FW_CFG_PORT_DMA_LO 0x518

#define FW_CFG_SIGNATURE   0x00
#define FW_CFG_ID          0x01
#define FW_CFG_FILE_DIR    0x19

#define FW_CFG_VERSION_DMA 0x02

#define DMA_CTL_ERROR  0x01
#define DMA_CTL_READ   0x02
#define DMA_CTL_SKIP   0x04
#define DMA_CTL_SELECT 0x08

struct fw_cfg_dma {
	u32 control;   /* big-endian */
	u32 length;    /* big-endian */
	u64 address;   /* big-endian */
} PACKED;

static inline void fwcfg_select(u16 key)
{
	outw(FW_CFG_PORT_SEL, key);
}

/* The next len bytes of the selected item, through the data port. */
static inline void fwcfg_pio_read(void *buf, u32 len)
{
	u8 *p = buf;
	while (len--)
		*p++ = inb(FW_CFG_PORT_DATA);
}

/* The signature probe: true if the device answers "QEMU" (raw bytes in sig);
 * *dma tells whether it offers DMA. */
static inline bool fwcfg_detect(u8 sig[4], bool *dma)
{
	fwcfg_select(FW_CFG_SIGNATURE);
	fwcfg_pio_read(sig, 4);
	*dma = false;
	if (memcmp(sig, "QEMU", 4) != 0)
		return false;
	u32 features = 0;
	fwcfg_select(FW_CFG_ID);
	fwcfg_pio_read(&features, 4);         /* little-endian */
	*dma = (features & FW_CFG_VERSION_DMA) != 0;
	return true;
}

/* One DMA transfer through desc (at physical desc_pa) to or from physical
 * address; false on the device's error bit or a timeout. */
static inline bool fwcfg_dma_transfer(struct fw_cfg_dma *desc, u64 desc_pa, u32 control, u32 length, u64 address)
{
	desc->control = bswap32(control);
	desc->length = bswap32(length);
	desc->address = __builtin_bswap64(address);
	barrier();
	outl(FW_CFG_PORT_DMA_HI, bswap32((u32)(desc_pa >> 32)));
	outl(FW_CFG_PORT_DMA_LO, bswap32((u32)desc_pa));
	for (u32 i = 0; i < 10000000; i++) {
		u32 ctl = bswap32(*(volatile u32 *)&desc->control);
		if (ctl & DMA_CTL_ERROR)
			return false;
		if (ctl == 0)
			return true;
	}
	return false;
}

/* Look name up in the file directory (selector and size in host order);
 * present: whether the device answered the signature probe (false without). */
static inline bool fwcfg_dir_lookup(bool present, const char *name, u16 *select, u32 *size)
{
	if (!present)
		return false;
	u32 count_be;
	fwcfg_select(FW_CFG_FILE_DIR);
	fwcfg_pio_read(&count_be, 4);
	u32 count = bswap32(count_be);
	for (u32 i = 0; i < count; i++) {
		struct {
			u32 size;      /* big-endian */
			u16 select;    /* big-endian */
			u16 reserved;
			char name[56];
		} PACKED f;
		fwcfg_pio_read(&f, sizeof(f));
		f.name[55] = 0;
		if (strcmp(f.name, name) == 0) {
			*select = bswap16(f.select);
			*size = bswap32(f.size);
			return true;
		}
	}
	return false;
}

#endif
