/*
 * scan: probes VM isolation. With `fill=1` it writes a marker into every
 * 4 KiB page of its RAM from 2 MiB up and exits. With `scan=1` it searches
 * every page of its own RAM from 2 MiB up for that marker (another VM's data
 * must never appear), then samples the whole 4 GiB guest-physical space every
 * 64 KiB and classifies what it reads: open bus (all ones) or something else
 * (its devices). Paging is off, so linear = guest-physical.
 */
#include "guest.h"

#define SCAN_FROM   0x200000u
#define SAMPLE_STEP 0x10000u

/* The marker is built at run time so the literal never sits in this image. */
static void make_marker(char m[16])
{
    const char enc[16] = { 'E', 'H', 'Q', 'L', '@', 'L', 'D', 'M', 'U', ',', 'R', 'D', 'B', 'Q', 'D', 'U' };
    for (int i = 0; i < 16; i++)
        m[i] = (char)(enc[i] + 1); /* "FIRMAMENT-SECRET" */
}

static uint32_t ram_top(const struct boot_info *bi)
{
    return 0x100000u + bi->mem_upper * 1024u;
}

int guest_main(struct boot_info *bi)
{
    char marker[16];
    uint32_t fill = 0, scan = 0;
    if (cmdline_get_u32(bi->cmdline, "fill", 0, &fill) < 0 || cmdline_get_u32(bi->cmdline, "scan", 0, &scan) < 0)
        guest_panic(EXIT_BAD_CONFIG, "scan: bad fill= or scan= option");
    make_marker(marker);
    uint32_t top = ram_top(bi);

    if (fill) {
        uint32_t pages = 0;
        for (uint32_t a = SCAN_FROM; a + 4096 <= top; a += 4096, pages++) {
            memcpy((void *)(uintptr_t)a, marker, 16);
            *(volatile uint32_t *)(uintptr_t)(a + 16) = a;
        }
        kprintf("scan: filled %u pages with the marker\n", pages);
        return EXIT_OK;
    }
    if (!scan)
        guest_panic(EXIT_BAD_CONFIG, "scan: give fill=1 or scan=1");

    uint32_t ram_pages = 0, secret_pages = 0;
    for (uint32_t a = SCAN_FROM; a + 4096 <= top; a += 4096, ram_pages++) {
        const char *p = (const char *)(uintptr_t)a;
        for (uint32_t off = 0; off + 16 <= 4096; off += 16)
            if (memcmp(p + off, marker, 16) == 0) {
                secret_pages++;
                break;
            }
    }
    kprintf("scan: searched %u own RAM pages for another VM's marker: %u found\n", ram_pages, secret_pages);

    uint32_t open_bus = 0, ram = 0, other = 0;
    for (uint64_t a = 0; a < 0x100000000ull; a += SAMPLE_STEP) {
        uint32_t v = *(volatile uint32_t *)(uintptr_t)a;
        if (a < top)
            ram++;
        else if (v == 0xffffffffu)
            open_bus++;
        else if (other++ < 8)
            kprintf("scan: non-RAM sample at %#llx reads %#x\n", (unsigned long long)a, v);
    }
    kprintf("scan: 4 GiB sampled every 64 KiB: %u RAM, %u open bus, %u other\n", ram, open_bus, other);
    return secret_pages == 0 ? EXIT_OK : EXIT_CHECK_FAIL;
}
