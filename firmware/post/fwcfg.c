/*
 * QEMU fw_cfg over I/O ports: selector 0x510 (16-bit), data 0x511,
 * DMA address 0x514 (high, big-endian) / 0x518 (low, big-endian, triggers).
 */
#include "fw.h"

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

static bool present, dma;
static struct fw_cfg_dma dma_desc __attribute__((aligned(16)));

static void select_key(u16 key)
{
	outw(FW_CFG_PORT_SEL, key);
}

static void read_data(void *buf, u32 len)
{
	u8 *p = buf;
	while (len--)
		*p++ = inb(FW_CFG_PORT_DATA);
}

bool fwcfg_probe(u32 *signature)
{
	u8 sig[4];
	select_key(FW_CFG_SIGNATURE);
	read_data(sig, 4);
	*signature = (u32)sig[0] | (u32)sig[1] << 8 | (u32)sig[2] << 16 | (u32)sig[3] << 24;
	present = memcmp(sig, "QEMU", 4) == 0;
	if (present) {
		u32 features = 0;
		select_key(FW_CFG_ID);
		read_data(&features, 4);              /* little-endian */
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
	select_key(key);
	read_data(buf, len);
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
	select_key(key);
	for (u32 i = 0; i < offset; i++)
		(void)inb(FW_CFG_PORT_DATA);
	read_data(dst, len);
	return true;
}

bool fwcfg_find_file(const char *name, u16 *select, u32 *size)
{
	if (!present)
		return false;
	u32 count_be;
	select_key(FW_CFG_FILE_DIR);
	read_data(&count_be, 4);
	u32 count = bswap32(count_be);
	for (u32 i = 0; i < count; i++) {
		struct {
			u32 size;      /* big-endian */
			u16 select;    /* big-endian */
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
