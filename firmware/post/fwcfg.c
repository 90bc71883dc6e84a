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
	present = fwcfg_detect(sig, &dma);
	*signature = (u32)sig[0] | (u32)sig[1] << 8 | (u32)sig[2] << 16 | (u32)sig[3] << 24;
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

static bool dma_op(u32 control, u32 length, u64 address)
{
	return fwcfg_dma_transfer(&dma_desc, (u64)(uintptr_t)&dma_desc, control, length, address);
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
