/*
 * QEMU fw_cfg for the firmware: probe, key and file reads, by DMA when the
 * device offers it (identity-mapped, so addresses are physical as they
 * stand), else through the data port. The register protocol is fwcfg.h.
 */
#include "fw.h"
#include "fwcfg.h"

static bool present, dma;
static struct fw_cfg_dma dma_desc __attribute__((aligned(16)));

bool fwcfg_probe(u32 *signature)
{
	u8 sig[4];
	fwcfg_select(FW_CFG_SIGNATURE);
	fwcfg_pio_read(sig, 4);
	*signature = (u32)sig[0] | (u32)sig[1] << 8 | (u32)sig[2] << 16 | (u32)sig[3] << 24;
	present = memcmp(sig, "QEMU", 4) == 0;
	if (present) {
		u32 features = 0;
		fwcfg_select(FW_CFG_ID);
		fwcfg_pio_read(&features, 4);         /* little-endian */
		dma = (features & FW_CFG_VERSION_DMA) != 0;
	}
	return present;
}

bool fwcfg_present(void)
{
	return present;
}

bool fwcfg_has_dma(void)
{
	return dma;
}

void fwcfg_read_key(u16 key, void *buf, u32 len)
{
	fwcfg_select(key);
	fwcfg_pio_read(buf, len);
}

/* One DMA transfer; returns false on the device's error bit or a timeout. */
static bool dma_op(u32 control, u32 length, u64 address)
{
	dma_desc.control = bswap32(control);
	dma_desc.length = bswap32(length);
	dma_desc.address = __builtin_bswap64(address);
	u64 desc = (u64)(uintptr_t)&dma_desc;
	barrier();
	outl(FW_CFG_PORT_DMA_HI, bswap32((u32)(desc >> 32)));
	outl(FW_CFG_PORT_DMA_LO, bswap32((u32)desc));
	for (u32 i = 0; i < 10000000; i++) {
		u32 ctl = bswap32(*(volatile u32 *)&dma_desc.control);
		if (ctl & DMA_CTL_ERROR)
			return false;
		if (ctl == 0)
			return true;
	}
	return false;
}

bool fwcfg_read_at(u16 key, u32 offset, void *dst, u32 len)
{
	if (dma) {
		if (!dma_op((u32)key << 16 | DMA_CTL_SELECT | DMA_CTL_SKIP, offset, 0))
			return false;
		return len == 0 || dma_op(DMA_CTL_READ, len, (u64)(uintptr_t)dst);
	}
	fwcfg_select(key);
	for (u32 i = 0; i < offset; i++)
		(void)inb(FW_CFG_PORT_DATA);
	fwcfg_pio_read(dst, len);
	return true;
}

bool fwcfg_find_file(const char *name, u16 *select, u32 *size)
{
	return fwcfg_dir_lookup(present, name, select, size);
}
