/*
 * hello: 32-bit protected-mode smoke test. Prints a greeting and the
 * Multiboot information it received, then exits 0.
 */
#include "guest.h"

static const char *mmap_type_name(uint32_t t)
{
    switch (t) {
    case 1: return "available";
    case 2: return "reserved";
    case 3: return "acpi-reclaimable";
    case 4: return "acpi-nvs";
    case 5: return "bad";
    default: return "other";
    }
}

/* Print the command line with the directory part of the first token (QEMU
 * puts the kernel's file name there) removed, so the transcript does not
 * depend on where the image lives. */
static void print_cmdline(const char *cl)
{
    const char *first_end = cl;
    while (*first_end && *first_end != ' ')
        first_end++;
    const char *base = cl;
    for (const char *p = cl; p < first_end; p++)
        if (*p == '/')
            base = p + 1;
    kputs("\"");
    kputs(base);
    kputs("\"");
}

int guest_main(struct boot_info *bi)
{
    kputs("hello: Firmament hello guest, 32-bit protected mode\n");
    kprintf("hello: multiboot magic %#x\n", bi->magic);
    kprintf("hello: mbi flags %#010x\n", bi->flags);
    if (!(bi->flags & MBI_FLAG_MEMORY))
        guest_panic(EXIT_BAD_BOOT, "hello: loader gave no memory info although the header asked for it");
    kprintf("hello: mem_lower %u KiB\n", bi->mem_lower);
    kprintf("hello: mem_upper %u KiB\n", bi->mem_upper);
    if (bi->flags & MBI_FLAG_BOOTDEV)
        kprintf("hello: boot_device %#010x\n", bi->boot_device);
    kputs("hello: cmdline ");
    if (bi->flags & MBI_FLAG_CMDLINE)
        print_cmdline(bi->cmdline);
    else
        kputs("(none)");
    kputs(bi->cmdline_truncated ? " (truncated)\n" : "\n");
    if (bi->flags & MBI_FLAG_MODS)
        kprintf("hello: mods_count %u\n", bi->mods_count);
    if (bi->flags & MBI_FLAG_MMAP) {
        kprintf("hello: mmap %u entries (%u bytes)\n", bi->mmap_count, bi->mmap_bytes);
        for (uint32_t i = 0; i < bi->mmap_count && i < BOOT_MAX_MMAP; i++) {
            const struct boot_mmap_entry *e = &bi->mmap[i];
            kprintf("hello: mmap[%u] size=%u base=%#018llx length=%#018llx type=%u (%s)\n", i, e->size,
                    (unsigned long long)e->base, (unsigned long long)e->length, e->type, mmap_type_name(e->type));
        }
    } else {
        kputs("hello: mmap (none)\n");
    }
    kputs("hello: goodbye\n");
    return EXIT_OK;
}
