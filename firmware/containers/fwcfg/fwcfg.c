/*
 * fwcfg: the fw_cfg device through its PIO ports only (the "fwcfg" grant is
 * the selector 0x510 and data 0x511; the DMA registers are never granted).
 * Checks the "QEMU" signature, the feature bitmap, and the file directory:
 * a sane entry count, every name NUL-terminated, printable and unique,
 * selectors in the file range (>= 0x20) and unique, and the two files this
 * boot depends on present and non-empty.
 */
#include "fm.h"

#define SEL  0x510
#define DATA 0x511
#define MAX_FILES 256

#define CODE_SIGNATURE 0x0401
#define CODE_DIR_COUNT 0x0402
#define CODE_DIR_NAME  0x0403
#define CODE_DIR_DUP   0x0404
#define CODE_DIR_SEL   0x0405
#define CODE_MISSING   0x0406

struct entry {
	u32 size;
	u16 select;
	char name[56];
};

static struct entry dir[MAX_FILES];

static void rd(void *buf, u32 n)
{
	u8 *p = buf;
	while (n--)
		*p++ = fm_inb(DATA);
}

static u32 be32(const u8 *p) { return (u32)p[0] << 24 | (u32)p[1] << 16 | (u32)p[2] << 8 | p[3]; }

static int find(u32 n, const char *name)
{
	for (u32 i = 0; i < n; i++)
		if (!strcmp(dir[i].name, name))
			return (int)i;
	return -1;
}

int main(void)
{
	u8 sig[4], feat[4], cnt[4];
	fm_outw(SEL, 0x0000);
	rd(sig, 4);
	if (memcmp(sig, "QEMU", 4) != 0) {
		u64 d[4] = { (u64)sig[0] | (u64)sig[1] << 8 | (u64)sig[2] << 16 | (u64)sig[3] << 24, 0, 0, 0 };
		fm_finding(FM_SEV_ERROR, CODE_SIGNATURE, d, "fw_cfg signature is 0x%08lx, not \"QEMU\"", d[0]);
		return FM_EXIT_FAIL;
	}
	fm_outw(SEL, 0x0001);
	rd(feat, 4);
	u32 features = (u32)feat[0] | (u32)feat[1] << 8 | (u32)feat[2] << 16 | (u32)feat[3] << 24;

	fm_outw(SEL, 0x0019);
	rd(cnt, 4);
	u32 n = be32(cnt);
	if (n == 0 || n > MAX_FILES) {
		u64 d[4] = { n, MAX_FILES, 0, 0 };
		fm_finding(FM_SEV_ERROR, CODE_DIR_COUNT, d, "fw_cfg file directory claims %u entries", n);
		return FM_EXIT_FAIL;
	}
	for (u32 i = 0; i < n; i++) {
		u8 raw[64];
		rd(raw, 64);
		dir[i].size = be32(raw);
		dir[i].select = (u16)(raw[4] << 8 | raw[5]);
		memcpy(dir[i].name, raw + 8, 56);
		u32 len = 0;
		while (len < 56 && raw[8 + len])
			len++;
		bool printable = len > 0 && len < 56;
		for (u32 k = 0; k < len && printable; k++)
			printable = raw[8 + k] >= 0x21 && raw[8 + k] <= 0x7e;
		if (!printable) {
			u64 d[4] = { i, len, 0, 0 };
			fm_finding(FM_SEV_ERROR, CODE_DIR_NAME, d, "fw_cfg directory entry %u has a bad name (length %u)", i, len);
			return FM_EXIT_FAIL;
		}
		if (dir[i].select < 0x20 || dir[i].select >= 0x4000) {
			u64 d[4] = { i, dir[i].select, 0, 0 };
			fm_finding(FM_SEV_ERROR, CODE_DIR_SEL, d, "fw_cfg file %s has selector 0x%x outside the file range",
				   dir[i].name, dir[i].select);
			return FM_EXIT_FAIL;
		}
		for (u32 j = 0; j < i; j++) {
			if (!strcmp(dir[j].name, dir[i].name) || dir[j].select == dir[i].select) {
				u64 d[4] = { j, i, dir[i].select, 0 };
				fm_finding(FM_SEV_ERROR, CODE_DIR_DUP, d, "fw_cfg files %u and %u share a name or selector", j, i);
				return FM_EXIT_FAIL;
			}
		}
	}
	static const char *const needed[] = { "opt/firmament/next-stage", "opt/fm/oci/index.json" };
	for (u32 k = 0; k < 2; k++) {
		int i = find(n, needed[k]);
		if (i < 0 || dir[i].size == 0) {
			u64 d[4] = { k, i < 0 ? 0 : 1, 0, 0 };
			fm_finding(FM_SEV_ERROR, CODE_MISSING, d, "fw_cfg file %s %s", needed[k], i < 0 ? "missing" : "empty");
			return FM_EXIT_FAIL;
		}
	}
	u32 blobs = 0;
	for (u32 i = 0; i < n; i++)
		if (!memcmp(dir[i].name, "opt/fm/blob/", 12))
			blobs++;
	fm_log("signature QEMU, features 0x%x (%s), %u files (%u container blobs), directory sane", features,
	       features & 2 ? "DMA" : "no DMA", n, blobs);
	return FM_EXIT_PASS;
}
