/*
 * fw_cfg reader for the OS: file directory lookup and whole-file reads,
 * by DMA when the device offers it (descriptor and target buffers are
 * addressed physically through virt_to_phys), else through the data port.
 */
#include "os.h"

#define FW_CFG_PORT_SEL    0x510
#define FW_CFG_PORT_DATA   0x511
#define FW_CFG_PORT_DMA_HI 0x514
#define FW_CFG_PORT_DMA_LO 0x518
#define FW_CFG_SIGNATURE   0x00
#define FW_CFG_ID          0x01
#define FW_CFG_FILE_DIR    0x19
#define DMA_CTL_ERROR  0x01
#define DMA_CTL_READ   0x02
#define DMA_CTL_SELECT 0x08

struct fw_cfg_dma {
	u32 control;
	u32 length;
	u64 address;
} PACKED;

static bool present, dma;
static struct fw_cfg_dma desc __attribute__((aligned(16)));

static void read_data(void *buf, u32 len)
{
	u8 *p = buf;
	while (len--)
		*p++ = inb(FW_CFG_PORT_DATA);
}

bool fwcfg_init(void)
{
	u8 sig[4];
	outw(FW_CFG_PORT_SEL, FW_CFG_SIGNATURE);
	read_data(sig, 4);
	present = memcmp(sig, "QEMU", 4) == 0;
	if (present) {
		u32 features = 0;
		outw(FW_CFG_PORT_SEL, FW_CFG_ID);
		read_data(&features, 4);
		dma = (features & 2) != 0;
	}
	return present;
}

bool fwcfg_find(const char *name, u16 *select, u32 *size)
{
	if (!present)
		return false;
	u32 count_be;
	outw(FW_CFG_PORT_SEL, FW_CFG_FILE_DIR);
	read_data(&count_be, 4);
	u32 count = bswap32(count_be);
	for (u32 i = 0; i < count; i++) {
		struct {
			u32 size;
			u16 select;
			u16 reserved;
			char name[56];
		} PACKED f;
		read_data(&f, sizeof(f));
		f.name[55] = 0;
		if (strcmp(f.name, name) == 0) {
			*select = bswap16(f.select);
			*size = bswap32(f.size);
			return true;
		}
	}
	return false;
}

/* Read the first len bytes of item key into dst (kernel or direct-map memory). */
bool fwcfg_read(u16 key, void *dst, u32 len)
{
	if (!present)
		return false;
	if (!dma) {
		outw(FW_CFG_PORT_SEL, key);
		read_data(dst, len);
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
