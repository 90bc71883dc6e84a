/* Common C entry: copies the Multiboot information and runs guest_main(). */
#include "guest.h"

struct boot_info boot_info;

/* Physical addresses below 4 GiB are identity mapped by both entry paths
 * while boot_main() runs. */
static const volatile uint8_t *phys(uint32_t addr)
{
    return (const volatile uint8_t *)(uintptr_t)addr;
}

static uint32_t rd32(uint32_t addr)
{
    const volatile uint8_t *p = phys(addr);
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t rd64(uint32_t addr)
{
    return (uint64_t)rd32(addr) | (uint64_t)rd32(addr + 4) << 32;
}

static void capture_mbi(struct boot_info *bi, uint32_t mbi)
{
    bi->flags = rd32(mbi + 0);
    if (bi->flags & MBI_FLAG_MEMORY) {
        bi->mem_lower = rd32(mbi + 4);
        bi->mem_upper = rd32(mbi + 8);
    }
    if (bi->flags & MBI_FLAG_BOOTDEV)
        bi->boot_device = rd32(mbi + 12);
    if (bi->flags & MBI_FLAG_CMDLINE) {
        uint32_t p = rd32(mbi + 16);
        size_t i = 0;
        if (p != 0) {
            for (; i + 1 < BOOT_CMDLINE_MAX; i++) {
                char c = (char)*phys(p + (uint32_t)i);
                if (!c)
                    break;
                bi->cmdline[i] = c;
            }
            if (i + 1 == BOOT_CMDLINE_MAX && *phys(p + (uint32_t)i) != 0)
                bi->cmdline_truncated = true;
        }
        bi->cmdline[i] = '\0';
    }
    if (bi->flags & MBI_FLAG_MODS)
        bi->mods_count = rd32(mbi + 20);
    if (bi->flags & MBI_FLAG_MMAP) {
        uint32_t len = rd32(mbi + 44), addr = rd32(mbi + 48);
        uint32_t off = 0;
        bi->mmap_bytes = len;
        /* Each entry is preceded by its size (which does not count itself). */
        while (off + 4 <= len) {
            uint32_t size = rd32(addr + off);
            if (size < 20 || off + 4 + size > len)
                break;
            if (bi->mmap_count < BOOT_MAX_MMAP) {
                struct boot_mmap_entry *e = &bi->mmap[bi->mmap_count];
                e->size = size;
                e->base = rd64(addr + off + 4);
                e->length = rd64(addr + off + 12);
                e->type = rd32(addr + off + 20);
            }
            bi->mmap_count++;
            off += size + 4;
        }
    }
}

/* Called by the architecture entry code with EAX/EBX from the loader. */
__attribute__((noreturn)) void boot_main(uint32_t magic, uint32_t mbi)
{
    serial_init();
    boot_info.magic = magic;
    boot_info.mbi_phys = mbi;
    if (magic != MULTIBOOT_BOOTLOADER_MAGIC)
        guest_panic(EXIT_BAD_BOOT, "not started by a Multiboot loader (EAX=%#x)", magic);
    capture_mbi(&boot_info, mbi);
    int rc = guest_main(&boot_info);
    guest_exit((uint32_t)rc);
}
