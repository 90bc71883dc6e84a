/*
 * fw_cfg reader for the OS: file directory lookup and whole-file reads,
 * by DMA when the device offers it (descriptor and target buffers are
 * addressed physically through virt_to_phys), else through the data port.
 * The register protocol is fwcfg.h, shared with the firmware.
 */
#include "os.h"
#include "fwcfg.h"

static bool present, dma;
static struct fw_cfg_dma desc __attribute__((aligned(16)));

bool fwcfg_init(void)
{
	u8 sig[4];
	fwcfg_select(FW_CFG_SIGNATURE);
	fwcfg_pio_read(sig, 4);
	present = memcmp(sig, "QEMU", 4) == 0;
	if (present) {
		u32 features = 0;
		fwcfg_select(FW_CFG_ID);
		fwcfg_pio_read(&features, 4);
		dma = (features & FW_CFG_VERSION_DMA) != 0;
	}
	return present;
}

bool fwcfg_find(const char *name, u16 *select, u32 *size)
{
	return fwcfg_dir_lookup(present, name, select, size);
}

/* Read the first len bytes of item key into dst (kernel or direct-map memory). */
bool fwcfg_read(u16 key, void *dst, u32 len)
{
	if (!present)
		return false;
	if (!dma) {
		fwcfg_select(key);
		fwcfg_pio_read(dst, len);
		return true;
	}
	desc.control = bswap32((u32)key << 16 | DMA_CTL_SELECT | DMA_CTL_READ);
	desc.length = bswap32(len);
	desc.address = __builtin_bswap64(virt_to_phys(dst));
	u64 d = virt_to_phys(&desc);
	barrier();
	outl(FW_CFG_PORT_DMA_HI, bswap32((u32)(d >> 32)));
	outl(FW_CFG_PORT_DMA_LO, bswap32((u32)d));
	for (u32 i = 0; i < 10000000; i++) {
		u32 ctl = bswap32(*(volatile u32 *)&desc.control);
		if (ctl & DMA_CTL_ERROR)
			return false;
		if (ctl == 0)
			return true;
	}
	return false;
}
