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
	present = fwcfg_detect(sig, &dma);
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
	return fwcfg_dma_transfer(&desc, virt_to_phys(&desc), (u32)key << 16 | DMA_CTL_SELECT | DMA_CTL_READ, len, virt_to_phys(dst));
}
